"""``import controller.cli`` stays cheap: what ``reconcile`` and ``plan`` never use is
imported only by the commands that need it (issue 17). Each check runs in a fresh
interpreter, since this test process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

NEVER_AT_START = (
    "vapi",  # the simulator's SDK models (the sim extra)
    "pgserver",  # the embedded Postgres (the sim extra)
    "controller.simulator",
    "controller.demo",
    "controller.daemon.http",
    "controller.doctor",
    "uvicorn",
    "starlette",
    "apprise",
    "apscheduler",
)


def imported_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(found.stdout.splitlines()[-1]))


def under(modules: list[str], package: str) -> list[str]:
    return [m for m in modules if m == package or m.startswith(f"{package}.")]


@pytest.fixture(scope="module")
def at_start() -> list[str]:
    return imported_after("import controller.cli")


@pytest.mark.parametrize("package", NEVER_AT_START)
def test_importing_the_command_line_leaves_out(package: str, at_start: list[str]) -> None:
    assert "controller.cli" in at_start
    assert under(at_start, package) == []


def test_the_command_line_imports_rich_only_through_httpx_own_command_line() -> None:
    """httpx imports rich for its ``httpx`` console script whenever rich is installed; with
    that module out of the way nothing of the controller imports rich at start."""
    modules = imported_after("import sys\nsys.modules['httpx._main'] = None\nimport controller.cli")
    assert "controller.cli" in modules
    assert under(modules, "rich") == []


def test_the_probe_sees_a_module_that_is_imported() -> None:
    assert under(imported_after("import controller.cli, starlette"), "starlette") != []
