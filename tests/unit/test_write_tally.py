"""A rollout logs one summary line per interval, not a line per organization (issue 17);
a failure is still logged on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from loguru import logger

from controller.core.outcome import OrgOutcome
from controller.reconcile.chain import WriteTally, _log_outcome


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    sink = logger.add(lambda message: records.append(message.record), level="DEBUG")
    yield records
    logger.remove(sink)


def levels(records: list[dict[str, Any]], level: str) -> list[str]:
    return [r["message"] for r in records if r["level"].name == level]


def test_organizations_synced_by_writing_are_summed_into_one_info_line(
    logged: list[dict[str, Any]],
) -> None:
    tally = WriteTally()
    for _ in range(500):
        _log_outcome(OrgOutcome(uuid4(), "synced", "", writes=2), "r", tally)
    _log_outcome(OrgOutcome(uuid4(), "synced", ""), "r", tally)  # nothing to do: not counted

    tally.flush()
    tally.flush()  # nothing since: no line

    assert levels(logged, "INFO") == ["reconciled: 500 organizations synced with 1000 writes"]
    assert len(levels(logged, "DEBUG")) == 501


def test_a_failure_is_logged_on_its_own_and_not_summed(logged: list[dict[str, Any]]) -> None:
    tally = WriteTally()
    _log_outcome(OrgOutcome(uuid4(), "failed", "vapi said no", writes=1), "r", tally)

    tally.flush()

    assert levels(logged, "WARNING") == ["reconciled: failed, 1 writes: vapi said no"]
    assert levels(logged, "INFO") == []
