"""Faults the simulator can inject, set in-process or through ``POST /_sim/faults``."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["400", "429", "500", "503", "timeout", "drop"]


@dataclass
class ScriptedFault:
    """Fail the next ``count`` requests matching ``method`` and ``route`` (``/assistant``,
    ``/assistant/{id}``, ``/tool``, ``/tool/{id}``, ``/phone-number``, ``/phone-number/{id}``;
    ``*`` matches any).

    ``timeout`` and ``drop`` on a write commit the write first, then never answer / cut the
    connection: the client cannot know it happened.
    """

    kind: FaultKind
    method: str = "*"
    route: str = "*"
    count: int = 1

    def matches(self, method: str, route: str) -> bool:
        return self.method in ("*", method) and self.route in ("*", route)


@dataclass
class Faults:
    latency_seconds: float = 0.0
    rate_limit_per_second: float | None = None
    rate_limit_burst: int = 10
    retry_after: bool = True
    """Send ``Retry-After`` with 429s (Vapi does not document it: test both)."""
    error_rate: float = 0.0
    """Share of requests answered 503 at random (nothing committed)."""
    page_cap: int = 100
    timeout_seconds: float = 3600.0
    """How long a ``timeout`` fault holds the response."""
    scripted: list[ScriptedFault] = field(default_factory=list)
    echo_credentials: bool = False
    """A careless upstream: injected 400s quote the Authorization header they were sent
    (to prove the controller redacts the key from everything it stores or prints)."""
    _tat: float = 0.0

    def take_scripted(self, method: str, route: str) -> ScriptedFault | None:
        for fault in self.scripted:
            if fault.count > 0 and fault.matches(method, route):
                fault.count -= 1
                if fault.count == 0:
                    self.scripted.remove(fault)
                return fault
        return None

    def over_rate(self, now: float | None = None) -> float | None:
        """Seconds until the next request fits, or None if this one fits (GCRA)."""
        if self.rate_limit_per_second is None:
            return None
        now = time.monotonic() if now is None else now
        interval = 1.0 / self.rate_limit_per_second
        tolerance = (self.rate_limit_burst - 1) * interval
        tat = max(self._tat, now)
        if tat - tolerance > now:
            return tat - tolerance - now
        self._tat = tat + interval
        return None

    def random_error(self) -> bool:
        return self.error_rate > 0 and random.random() < self.error_rate
