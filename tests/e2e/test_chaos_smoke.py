"""The fault campaign (``bench/chaos.py``), short, on a fixed seed: two replicas of the real
daemon under every kind of fault and a workload of platform changes, then the end checks.
Slow (about two minutes); only the checks are asserted, never wall time."""

from __future__ import annotations

import pytest

from bench import chaos


@pytest.mark.slow
def test_a_short_campaign_passes_every_end_check(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_admin_url)
    smoke = ("--seed", "1", "--minutes", "1", "--orgs", "20", "--replicas", "2")
    args = chaos.parse_args([*smoke, "--converge-timeout", "60"])

    result = chaos.chaos(args)

    assert len(result["faults"]) >= len(chaos.FAULTS_PER_MINUTE) - 1, result["faults"]
    assert sum(result["changes"].values()) >= 50, result["changes"]
    assert result["failed"] == [], chaos.summary(result)
