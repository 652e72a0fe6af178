"""One rate budget for the whole process (GCRA). A 429 slows every caller, not just one.

Must not sleep in a way tests cannot control: the clock and the sleep are injectable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    def __init__(
        self,
        *,
        rate: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._clock = clock
        self._sleep = sleep
        self._pause_until = 0.0
        self._tat = 0.0
        self.waited_seconds = 0.0
        self.set_rate(rate, burst=burst)

    def set_rate(self, rate: float, *, burst: int) -> None:
        self.rate = rate
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval

    async def acquire(self) -> None:
        """Wait until one more request fits the budget."""
        while True:
            now = self._clock()
            tat = max(self._tat, now)
            start = max(now, tat - self._tolerance, self._pause_until)
            self._tat = max(tat, start) + self._interval
            if start > now:
                self.waited_seconds += start - now
                await self._sleep(start - now)
            if self._clock() >= self._pause_until:
                return

    def slow_down(self, seconds: float) -> None:
        """Hold every caller for ``seconds``, then resume at the steady rate (no burst)."""
        until = self._clock() + max(seconds, 0.0)
        if until > self._pause_until:
            self._pause_until = until
            self._tat = max(self._tat, until + self._tolerance)
