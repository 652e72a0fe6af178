"""Every command in the docs (the ``sh`` blocks of README.md and docs/*.md) is run by a test:
``vapi-reconciler`` commands here, against a migrated database and the simulator on a
loopback port; the others are mapped to the test or CI step that runs them. A command that
fits none of these fails, so the docs can't gain a command nobody runs. Commands that need a
cluster or a Docker engine are written in ``console`` blocks and validated by
``./dev deploy-check`` instead."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.run import SCENARIOS
from tests.conftest import TEST_KEY
from tests.e2e.conftest import Cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_ELSEWHERE = {
    "./dev demo": "tests/e2e/test_demo.py runs `python -m controller demo`",
    "./dev test": "CI (.ci/run)",
    "./dev lint": "CI (.ci/run)",
    "./dev deploy-check": "CI (.ci/run)",
}
EXIT_CODES = {"plan": {0, 2}}  # plan: 2 means changes are pending


def documented_commands() -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), flags=re.DOTALL):
            for line in block.splitlines():
                command = line.split(" #", 1)[0].strip()
                if command and not command.startswith(("#", "export ")):
                    yield doc.name, command


COMMANDS = sorted(set(documented_commands()))


def test_the_docs_hold_commands_to_check() -> None:
    assert any(c.startswith("vapi-reconciler ") for _, c in COMMANDS)


@pytest.mark.parametrize(("doc", "command"), COMMANDS)
def test_every_documented_command_is_known(doc: str, command: str) -> None:
    words = shlex.split(command)
    if words[0] == "vapi-reconciler":
        return  # run below
    if words[:3] == [".venv/bin/python", "-m", "bench.run"]:
        assert words[3] in SCENARIOS, f"{doc}: unknown scenario in {command!r}"
        return  # every scenario is run small by tests/e2e/test_bench_smoke.py
    base = " ".join(words[:2])
    assert base in RUN_ELSEWHERE, f"{doc}: no test runs {command!r}"
    if "CI" in RUN_ELSEWHERE[base]:
        assert base in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize(
    ("doc", "command"), [(d, c) for d, c in COMMANDS if c.startswith("vapi-reconciler ")]
)
def test_documented_vapi_reconciler_commands_run(doc: str, command: str, cli: Cli) -> None:
    words = shlex.split(command)
    result = cli(*words[1:])

    allowed = EXIT_CODES.get(words[1], {0})
    assert result.returncode in allowed, f"{doc}: {command}\n{result.stderr[-2000:]}"
    assert TEST_KEY not in result.stdout + result.stderr
