"""The process-wide rate budget, on a fake clock."""

from __future__ import annotations

import asyncio

from controller.vapi.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_requests_beyond_the_burst_are_spaced_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=10, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(25):
        await limiter.acquire()
    assert abs(clock.now - 2.0) < 1e-9


async def test_slow_down_holds_every_caller_then_resumes_without_a_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=10, burst=5, clock=clock, sleep=clock.sleep)
    limiter.slow_down(3.0)
    await limiter.acquire()
    assert clock.now >= 3.0
    start = clock.now
    for _ in range(10):
        await limiter.acquire()
    assert clock.now - start >= 0.9


async def test_concurrent_callers_share_one_budget() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=100, burst=1, clock=clock, sleep=clock.sleep)
    await asyncio.gather(*(limiter.acquire() for _ in range(101)))
    assert abs(clock.now - 1.0) < 1e-6


async def test_waiters_woken_late_together_still_leave_at_the_rate() -> None:
    """The event loop was busy past several waiters' times: they wake together, and go out
    no faster than the budget allows (the burst at once, then the rate)."""

    class StallingClock(FakeClock):
        def __init__(self) -> None:
            super().__init__()
            self.stall: asyncio.Event | None = asyncio.Event()

        async def sleep(self, seconds: float) -> None:
            if self.stall is not None:
                await self.stall.wait()  # every sleeper wakes when the loop is free again
            else:
                self.now += seconds

        def end_stall(self, at: float) -> None:
            assert self.stall is not None
            self.now = at
            self.stall.set()
            self.stall = None

    clock = StallingClock()
    limiter = RateLimiter(rate=10, burst=2, clock=clock, sleep=clock.sleep)
    left: list[float] = []

    async def request() -> None:
        await limiter.acquire()
        left.append(clock.now)

    await request()
    await request()  # the burst, at once
    waiters = [asyncio.create_task(request()) for _ in range(6)]
    await asyncio.sleep(0)  # each has its place in line, all before 0.7 s
    clock.end_stall(at=1.0)
    await asyncio.gather(*waiters)

    assert left[:2] == [0.0, 0.0]
    assert [round(t, 6) for t in left[2:]] == [1.0, 1.0, 1.1, 1.2, 1.3, 1.4]
