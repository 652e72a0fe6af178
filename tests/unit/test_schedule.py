"""Next visits: resync with jitter, exponential backoff, and waiting for a change."""

from __future__ import annotations

import pytest

from controller.core.schedule import NextVisit, SchedulePolicy, next_visit

POLICY = SchedulePolicy(
    resync_seconds=300, jitter=0.1, backoff_base_seconds=1, backoff_max_seconds=60
)


@pytest.mark.parametrize(("draw", "due"), [(0.0, 270.0), (0.5, 300.0), (0.999999, 330.0)])
def test_a_converged_org_comes_back_at_the_resync_interval_spread_by_jitter(
    draw: float, due: float
) -> None:
    visit = next_visit("resync", attempts=3, policy=POLICY, draw=draw)
    assert visit.due_in == pytest.approx(due, abs=1e-3)
    assert visit.attempts == 0


def test_backoff_doubles_per_attempt_up_to_the_ceiling() -> None:
    dues = [
        next_visit("backoff", attempts=n, policy=POLICY, draw=0.999999).due_in for n in range(8)
    ]
    assert dues == pytest.approx([1, 2, 4, 8, 16, 32, 60, 60], rel=1e-5)
    assert next_visit("backoff", attempts=2, policy=POLICY, draw=0.0).due_in == 2.0


def test_a_permanent_failure_waits_for_a_change() -> None:
    assert next_visit("on_change", attempts=1, policy=POLICY, draw=0.5) == NextVisit(None, 2)
