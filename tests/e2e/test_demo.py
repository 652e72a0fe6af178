"""The README's first command: the demo, with no DATABASE_URL and no Vapi key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_runs_on_embedded_defaults_and_shows_the_whole_loop(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VAPI_") and k not in ("DATABASE_URL", "TEST_DATABASE_URL")
    }
    result = subprocess.run(
        [sys.executable, "-m", "controller", "demo", "--orgs", "6"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "starting an embedded PostgreSQL" in out
    assert "Starting the daemon" in out
    assert "converged: {'synced': 6}" in out
    assert "drift made outside the controller" in out
    assert "healed them with 2 writes" in out
    assert "its prompts changed: 0 writes, state paused" in out
    assert "resumed by removing it from paused_orgs: 2 writes, {'synced': 6}" in out
    assert "demo finished" in out
    assert "\x1b[" not in out  # no colour codes when the output is not a terminal
