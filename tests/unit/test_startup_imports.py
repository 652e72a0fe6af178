"""``import controller.cli`` stays cheap: what ``reconcile`` and ``plan`` never use is
imported only by the commands that need it (issue 17: ``reconcile``'s first write within
0.8 s of process start; ``bench/startup.py`` measures it). Each check runs in a fresh
interpreter, since this test process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from desired_state.migrate import head_revision
from desired_state.revision import HEAD_REVISION

NEVER_AT_START = (
    "vapi",  # the simulator's SDK models (the sim extra)
    "pgserver",  # the embedded Postgres (the sim extra)
    "controller.simulator",
    "controller.demo",
    "controller.daemon",
    "controller.doctor",
    "controller.report",  # plan's output, after the pass
    "controller.status_report",
    "controller.history_report",
    "desired_state.views",  # status and history read through it
    "desired_state.migrate",
    "alembic",  # migrate only; the schema check compares with HEAD_REVISION
    "mako",
    "jsonschema",  # once a tool is rendered
    "aiohttp",  # the Vapi transport, made at the first request
    "rich",  # terminal output only
    "pygments",
    "httpx._main",  # httpx's own command line, which imports rich
    "uvicorn",
    "starlette",
    "apprise",
    "apscheduler",
    "prometheus_client",
)
WARMED = ("jsonschema", "aiohttp")
"""Imported by ``controller.warmup``'s thread beside the start of ``reconcile``, ``plan`` and
``run`` (when the thread gets to it is not fixed): never by the import of the command line."""
NEVER_IN_THE_DAEMON = (
    "vapi",
    "pgserver",
    "controller.simulator",
    "controller.demo",
    "controller.doctor",
    "alembic",
    "jsonschema",
    "rich",
    "apprise",  # only once an alert is delivered to a chat sink
)
RECONCILE_UNTIL_THE_DATABASE = """
import os
os.environ.update(
    DATABASE_URL="postgresql://nobody@127.0.0.1:9/nothing",
    VAPI_BASE_URL="http://127.0.0.1:9",
    VAPI_PRIVATE_KEY="sk-startup-probe",
    BACKEND_URL="https://backend.example",
)
from controller.cli import main
try:
    main(["--log-level", "CRITICAL", "reconcile", "--config", {config!r}])
except SystemExit as exit:
    assert exit.code == 1, exit.code
"""
"""``reconcile`` through its start (settings, key, engine, Vapi client) to its first query,
which fails: nothing listens on port 9."""


def imported_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``code`` (not those blocked with
    a None entry)."""
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps(sorted(n for n, m in sys.modules.items() if m is not None)))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(found.stdout.splitlines()[-1]))


def under(modules: list[str], package: str) -> list[str]:
    return [m for m in modules if m == package or m.startswith(f"{package}.")]


@pytest.fixture(scope="module")
def at_start() -> list[str]:
    return imported_after("import controller.cli")


@pytest.fixture(scope="module")
def reconcile_started(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    config = tmp_path_factory.mktemp("startup") / "config.toml"
    config.write_text("")
    return imported_after(RECONCILE_UNTIL_THE_DATABASE.format(config=str(config)))


@pytest.fixture(scope="module")
def daemon_imported() -> list[str]:
    """What ``run`` imports before it starts (it serves health and metrics)."""
    return imported_after(
        "import controller.cli, controller.daemon.metrics, controller.daemon.supervisor"
    )


@pytest.mark.parametrize("package", NEVER_AT_START)
def test_importing_the_command_line_leaves_out(package: str, at_start: list[str]) -> None:
    assert "controller.cli" in at_start
    assert under(at_start, package) == []


@pytest.mark.parametrize("package", [p for p in NEVER_AT_START if p not in WARMED])
def test_reconcile_up_to_its_first_query_leaves_out(
    package: str, reconcile_started: list[str]
) -> None:
    assert "psycopg" in reconcile_started  # the engine was made: the start was run through
    assert under(reconcile_started, package) == []


@pytest.mark.parametrize("package", NEVER_IN_THE_DAEMON)
def test_the_daemon_leaves_out(package: str, daemon_imported: list[str]) -> None:
    assert "controller.daemon.supervisor" in daemon_imported
    assert under(daemon_imported, package) == []


def test_both_ways_in_hold_the_collector_off_until_start_up_is_over() -> None:
    """The console script and ``python -m controller`` both start at ``controller.start``:
    no pass of the collector until ``START_UP_OBJECTS``; the first one freezes what survives
    it and sets the daemon's young-generation threshold (the older ones as usual)."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert scripts["vapi-reconciler"] == "controller.start:main"
    probe = (
        "import gc, runpy, sys\nusual = gc.get_threshold()\n"
        "sys.argv = ['controller', '--version']\ntry:\n"
        "    runpy.run_module('controller', run_name='__main__')\nexcept SystemExit:\n"
        "    pass\nfrom controller.start import START_UP_OBJECTS, YOUNG_OBJECTS\n"
        "held = gc.get_threshold()[0] == START_UP_OBJECTS and gc.get_freeze_count() == 0\n"
        "gc.collect()\n"
        "after = (YOUNG_OBJECTS, *usual[1:])\n"
        "print(held, gc.get_threshold() == after, gc.get_freeze_count() > 0, gc.callbacks)"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.splitlines()[-1] == "True True True []"


def test_the_schema_check_expects_the_newest_migration() -> None:
    """``desired_state.revision`` knows the head without alembic: a new migration moves it."""
    assert head_revision() == HEAD_REVISION


def test_httpx_still_imports_without_its_command_line() -> None:
    modules = imported_after("import controller.cli, httpx\nassert callable(httpx.main)")
    assert under(modules, "rich") == []


def test_the_probe_sees_a_module_that_is_imported() -> None:
    assert under(imported_after("import controller.cli, starlette"), "starlette") != []
