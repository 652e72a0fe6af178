"""The benchmark scenarios, small: the real daemon and the simulator in their own processes.
Only what is exact is asserted (writes and call counts), never wall time."""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

import pytest

from bench import run, statements
from controller.aio import run as run_loop

pytestmark = pytest.mark.slow
ORGS = 20


@pytest.fixture
def args(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    monkeypatch.setenv("DATABASE_URL", pg_admin_url)
    args = run.argument_parser().parse_args(["cold-start"])  # every option at its default
    args.orgs, args.latency, args.concurrency, args.samples = ORGS, 0.0, 8, 3
    args.minutes, args.timeout = 0.01, 120.0
    return args


def test_a_one_shot_cold_start_converges_every_organization_once(
    args: argparse.Namespace,
) -> None:
    args.one_shot = True

    result = run.cold_start(args)

    assert result["scenario"] == "cold-start-reconcile"
    assert result["writes"] == result["minimum_writes"] == run.TOOLS + 2 * ORGS
    assert result["synced"] == ORGS
    assert result["reconcile_cpu_s"] > 0


def test_cold_start_writes_each_object_exactly_once(args: argparse.Namespace) -> None:
    result = run.cold_start(args)

    minimum = run.TOOLS + 2 * ORGS
    calls = result["calls_by_method_status"]
    assert result["writes"] == result["minimum_writes"] == minimum
    assert calls["POST /tool 201"] == run.TOOLS
    assert calls["POST /assistant 201"] == 2 * ORGS
    assert not [k for k in calls if k.startswith(("PATCH", "DELETE"))]


def test_two_replicas_sharing_a_cold_start_write_each_object_exactly_once(
    args: argparse.Namespace,
) -> None:
    args.replicas = 2

    result = run.cold_start(args)

    assert result["scenario"] == "cold-start-2-replicas"
    assert result["writes"] == result["minimum_writes"] == run.TOOLS + 2 * ORGS
    assert result["objects_in_vapi_over_minimum"] == 0
    assert len(result["daemon_cpu_s_each"]) == 2
    assert result["peak_requests_1s"] >= 1
    assert result["peak_writes_1s"] >= 1


@pytest.mark.skipif(
    not (Path(sys.executable).with_name("py-spy").exists() or shutil.which("py-spy")),
    reason="py-spy is not installed",
)
def test_a_profiled_cold_start_shares_the_daemons_cpu_between_categories(
    args: argparse.Namespace,
) -> None:
    args.profile = True

    result = run.cold_start(args)

    assert [Path(p).name for p in result["profile_files"]] == ["bench.folded"]
    assert result["profile_sampled_cpu_s"] > 0
    assert sum(c["share"] for c in result["profile"].values()) == pytest.approx(1.0, abs=0.01)


def test_a_steady_resync_pass_writes_nothing_and_calls_nothing_but_the_poll(
    args: argparse.Namespace,
) -> None:
    result = run.steady_state(args)

    assert result["writes_per_pass"] == 0
    assert result["vapi_calls_per_pass"] == result["of_which_poll_listings"]
    # each complete listing ends on a page adding nothing: assistants, tools, phone numbers
    assert result["cold_observe_calls"] <= math.ceil(2 * ORGS / run.PAGE_CAP) + 1 + 2 + 1


def test_a_cpu_profile_of_a_steady_pass_samples_that_pass_only(args: argparse.Namespace) -> None:
    args.cpu_profile, args.skip_cold_observe, args.orgs = True, True, 300  # a pass of some CPU

    result = run.steady_state(args)

    assert [Path(p).name for p in result["profile_files"]] == ["bench.cpu.folded"]
    # the window: the pass's CPU, not the daemon's since its start (set-up converged it)
    assert 0 < result["profile_sampled_cpu_s"] <= result["cpu_s_per_pass"] + 0.05
    assert sum(c["share"] for c in result["profile"].values()) == pytest.approx(1.0, abs=0.01)


def test_phone_numbers_cost_a_steady_pass_nothing_but_their_poll(
    args: argparse.Namespace,
) -> None:
    args.numbers = True
    result = run.steady_state(args)

    assert result["phone_numbers"] == ORGS
    assert result["writes_per_pass"] == 0
    assert result["vapi_calls_per_pass"] == result["of_which_poll_listings"]


def test_a_drift_storm_is_repaired_with_one_write_per_edited_assistant(
    args: argparse.Namespace,
) -> None:
    args.orgs = 50  # 100 assistants: 1% is one

    result = run.drift_storm(args)

    assert result["edited"] == result["writes"] == 1
    assert result["writes_are_the_edited"]
    assert result["synced_after"] == 50


def test_change_latency_takes_one_sample_per_row_update(args: argparse.Namespace) -> None:
    result = run.change_latency(args)

    assert result["samples"] == 3


def test_edits_during_a_cold_start_each_reach_vapi_in_a_write_that_carries_them(
    args: argparse.Namespace,
) -> None:
    args.under_load, args.samples = True, 5

    result = run.change_latency(args)

    assert result["scenario"] == "change-latency-under-load"
    assert result["samples"] == 5


def test_a_soak_samples_the_daemon_and_writes_nothing(args: argparse.Namespace) -> None:
    result = run.soak(args)

    assert result["writes"] == 0
    assert result["samples"]
    assert result["pg_connections_warm_last_max"][0] >= 1


def test_the_statement_benchmark_measures_every_road(pg_admin_url: str) -> None:
    figures = run_loop(statements.measure(pg_admin_url, 300))

    assert set(figures) == {
        "sqlalchemy_checkout_and_statement_ms",
        "sqlalchemy_held_connection_ms",
        "direct_checkout_and_statement_ms",
    }
    assert all(value >= 0 for value in figures.values())
    assert sum(figures.values()) > 0  # CPU time is counted in clock ticks: one may read 0
