"""The profile summary: each sample counted once, under the innermost frame that has a
category, so a library called from another is charged to itself, not to its caller."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.profile import ORDER, OTHER, by_category, categorize, hottest, main, summarize

LOOP = "_run_once (asyncio/base_events.py:1922);Handle._run (asyncio/events.py:84)"
CLAIM = "ClaimLoop.run (controller/daemon/claims.py:120)"
FOLDED = [
    # JSON under SQLAlchemy under the claim loop: JSON
    f"{LOOP};{CLAIM};execute (sqlalchemy/engine/base.py:1412);dumps (json/__init__.py:231) 5",
    # SQLAlchemy with a stdlib leaf (uuid) under it: the database
    f"{LOOP};{CLAIM};load_desired (desired_state/load.py:80);UUID.__init__ (uuid.py:175) 4",
    # the hash line of fingerprint (sha256 is C, no frame of its own): hashing
    f"{LOOP};{CLAIM};plan (controller/core/plan.py:40);"
    "fingerprint (controller/core/desired.py:18) 3",
    # JSON inside fingerprint: JSON, not hashing
    f"{LOOP};fingerprint (controller/core/desired.py:17);dumps (json/__init__.py:231) 2",
    f"{LOOP};{CLAIM};plan (controller/core/plan.py:44) 6",
    f"{LOOP};send (httpx/_client.py:1600);h11 (h11/_connection.py:400) 7",
    f"{LOOP};info (loguru/_logger.py:2000) 1",
    f"{LOOP};inc (prometheus_client/metrics.py:300) 1",
    f"{LOOP};{CLAIM} 2",  # the controller's own code: not the event loop
    f"{LOOP};select (selectors.py:468) 8",  # the loop itself
    f"{LOOP};{CLAIM};validate (pydantic/main.py:500) 1",  # a library under ours: ours
    "validate (pydantic/main.py:500) 3",  # nothing matched
    " 1",  # a sample with no Python frame
    # a collection started by an allocation in planning: the collector's (cpu_sampler)
    f"{LOOP};{CLAIM};plan (controller/core/plan.py:44);collect (gc:1) 2",
]


def test_each_sample_goes_to_the_innermost_frame_that_has_a_category() -> None:
    counts = by_category(FOLDED)

    assert counts == {
        "garbage collection": 2,
        "JSON": 7,
        "database": 4,
        "hashing": 3,
        "planning/rendering": 6,
        "HTTP": 7,
        "logging": 1,
        "metrics": 1,
        "controller, rest": 3,
        "event loop": 8,
        OTHER: 4,
    }


def test_the_event_loop_is_credited_only_when_nothing_inside_it_has_a_category() -> None:
    assert categorize(["_run_once (asyncio/base_events.py:1922)"]) == "event loop"
    assert categorize([LOOP.split(";")[0], CLAIM]) == "controller, rest"


def test_shares_add_up_and_milliseconds_split_the_measured_cpu_by_share() -> None:
    rows = summarize(FOLDED, writes=10, cpu_seconds=4.6)

    assert [r.category for r in rows] == ORDER
    assert sum(r.samples for r in rows) == 46
    assert sum(r.share for r in rows) == pytest.approx(1.0)
    assert sum(r.ms_per_write for r in rows) == pytest.approx(460.0)
    event_loop = next(r for r in rows if r.category == "event loop")
    assert event_loop.ms_per_write == pytest.approx(8 / 46 * 460.0)


def test_without_measured_cpu_each_sample_counts_one_over_the_sampling_rate() -> None:
    rows = summarize(FOLDED, writes=2, rate=200)

    assert sum(r.ms_per_write for r in rows) == pytest.approx(1000 * 46 / 200 / 2)


def test_the_hottest_frames_are_the_innermost_ones_without_line_numbers() -> None:
    top = dict(hottest(FOLDED, top=3))

    assert top == {
        "selectors.py::select": 8,
        "h11/_connection.py::h11": 7,
        "json/__init__.py::dumps": 7,
    }


def test_main_prints_the_table_of_a_folded_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folded = tmp_path / "x.folded"
    folded.write_text("\n".join(FOLDED) + "\n")

    main([str(folded), "--writes", "10", "--top", "0"])

    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["category", "samples", "CPU", "share", "ms/write"]
    assert "event loop" in out
    assert out.splitlines()[-1].split()[:2] == ["total", "46"]
