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
