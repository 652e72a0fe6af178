"""Leases as the replica itself sees them: on the local monotonic clock.

A claim's lease ends at a time Postgres knows; the replica holding it keeps a deadline of its
own, taken *before* the claim (or renewal) was sent and shortened by a safety margin, so it
always ends before the real one. A process that was paused (SIGSTOP, a long GC, a frozen VM)
wakes up past its deadline and knows it: every Vapi write asks ``alive()`` right before it is
sent, and a write whose claim may have expired is abandoned. Must not touch Postgres.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


class Lease:
    """Always alive: the one-shot commands hold no claim (they run alone by design)."""

    def alive(self) -> bool:
        return True


@dataclass
class ClaimLease(Lease):
    seconds: float
    margin: float
    deadline: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def asked(
        cls,
        *,
        at: float,
        seconds: float,
        margin: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> ClaimLease:
        """The lease of a claim whose statement was sent at ``at`` (monotonic)."""
        return cls(seconds, margin, at + seconds - margin, clock)

    def renewed(self, *, asked_at: float) -> None:
        """Postgres extended the lease by a statement sent at ``asked_at`` (monotonic)."""
        self.deadline = max(self.deadline, asked_at + self.seconds - self.margin)

    def alive(self) -> bool:
        return self.clock() < self.deadline


def safety_margin(lease_seconds: float) -> float:
    """A fifth of the lease, at least a second: room for the clocks of Postgres and of this
    process to disagree and for one request to be sent."""
    return max(lease_seconds / 5, 1.0)
