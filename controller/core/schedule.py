"""When to visit an organization next, from the outcome of this visit. Pure: the caller
passes the random draw (for jitter), so ten thousand organizations never fall due together
and tests stay exact."""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.outcome import Retry


@dataclass(frozen=True)
class SchedulePolicy:
    resync_seconds: float
    jitter: float
    """Share of the resync interval to spread by, each way (0.1: +-10%)."""
    backoff_base_seconds: float
    backoff_max_seconds: float


@dataclass(frozen=True)
class NextVisit:
    due_in: float | None
    """Seconds from now; None: not until the desired state changes."""
    attempts: int


def next_visit(retry: Retry, *, attempts: int, policy: SchedulePolicy, draw: float) -> NextVisit:
    """``draw`` is uniform in [0, 1)."""
    if retry == "on_change":
        return NextVisit(None, attempts + 1)
    if retry == "backoff":
        ceiling = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2**attempts)
        return NextVisit(ceiling * (0.5 + draw / 2), attempts + 1)
    spread = policy.resync_seconds * policy.jitter * (2 * draw - 1)
    return NextVisit(max(policy.resync_seconds + spread, 0.0), 0)
