"""Every command in the docs (the ``sh`` blocks of README.md and docs/*.md) is run by a test:
``vapi-reconciler`` commands here, against a migrated database and the simulator on a
loopback port; the others are mapped to the test or CI step that runs them. A command that
fits none of these fails, so the docs can't gain a command nobody runs. Commands that need a
cluster or a Docker engine are written in ``console`` blocks and validated by
``./dev deploy-check`` instead.

docs/adopting.md is a walk-through: its ``sh`` lines run in order, through the shell, on the
live platform schema from nothing installed, each ``toml`` block becoming the
``config.toml`` of the lines after it, and a line's ``# exits N`` (or ``N or M``) comment is
the exit code it must have (0 without one)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bench.run import SCENARIOS
from desired_state.embedded import scratch_database
from desired_state.engine import sync_engine
from tests.conftest import CONTROLLER_PASSWORD, ROLE_SQL, TEST_KEY, live_platform_sql, run_script
from tests.e2e.conftest import Cli
from tests.e2e.daemon import controller_env, seed

ROOT = Path(__file__).resolve().parents[2]
ADOPTING = ROOT / "docs" / "adopting.md"
DOCS = [ROOT / "README.md", *sorted(set((ROOT / "docs").glob("*.md")) - {ADOPTING})]
RUN_ELSEWHERE = {
    "./dev demo": "tests/e2e/test_demo.py runs `python -m controller demo`",
    "./dev test": "CI (.ci/run)",
    "./dev lint": "CI (.ci/run)",
    "./dev deploy-check": "CI (.ci/run)",
}
MODULES_RUN_ELSEWHERE = {
    "bench.statements": "tests/e2e/test_bench_smoke.py measures each road small",
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
    if words[:2] == [".venv/bin/python", "-m"] and words[2] in MODULES_RUN_ELSEWHERE:
        return
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


def walkthrough(doc: Path) -> Iterator[tuple[str, str]]:
    """``("toml", file)`` and ``("sh", line)`` in the order the document gives them."""
    for kind, block in re.findall(r"```(sh|toml)\n(.*?)```", doc.read_text(), flags=re.DOTALL):
        if kind == "toml":
            yield kind, block
            continue
        for line in block.splitlines():
            if line.strip() and not line.startswith(("#", "export ")):
                yield kind, line


def expected_exit(line: str) -> set[int]:
    found = re.search(r"# exits (\d)(?: or (\d))?", line)
    return {int(code) for code in found.groups() if code} if found else {0}


def test_adopting_runs_step_by_step_on_the_live_schema_from_nothing_installed(
    pg_admin_url: str, controller_role: str, simulator_url: str, tmp_path: Path
) -> None:
    """Roles are cluster-wide: the walk-through runs under this session's role name, in a
    directory holding the role script rewritten for it."""
    steps = list(walkthrough(ADOPTING))
    assert any(kind == "toml" for kind, _ in steps)
    script = tmp_path / "deploy" / "postgres" / "controller-role.sql"
    script.parent.mkdir(parents=True)
    script.write_text(ROLE_SQL.read_text().replace("vapi_reconciler", controller_role))
    (tmp_path / "bin").mkdir()
    shim = tmp_path / "bin" / "vapi-reconciler"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m controller "$@"\n')
    shim.chmod(0o755)
    with scratch_database(pg_admin_url, prefix="vapi_reconciler_adopting") as admin_url:
        engine = sync_engine(admin_url)
        try:
            run_script(engine, live_platform_sql())
        finally:
            engine.dispose()
        seed(admin_url, 2)
        role_url = make_url(admin_url).set(username=controller_role, password=CONTROLLER_PASSWORD)
        env = controller_env(role_url.render_as_string(hide_password=False), simulator_url)
        env.update(
            ADMIN_DATABASE_URL=admin_url,
            CONTROLLER_PASSWORD=CONTROLLER_PASSWORD,
            PATH=f"{tmp_path / 'bin'}:{env['PATH']}",
        )
        for kind, step in steps:
            if kind == "toml":
                (tmp_path / "config.toml").write_text(step)
                continue
            command = step.replace("vapi_reconciler", controller_role)
            result = subprocess.run(
                ["/bin/bash", "-c", command],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            output = result.stdout + result.stderr
            assert result.returncode in expected_exit(step), f"{step}\n{output[-3000:]}"
            assert TEST_KEY not in output
