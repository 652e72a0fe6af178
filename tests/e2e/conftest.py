"""The CLI as a subprocess against real PostgreSQL and the simulator on a loopback port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_KEY
from tests.e2e.daemon import controller_env


@dataclass(frozen=True)
class Cli:
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "controller", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@contextmanager
def running_simulator(key: str) -> Iterator[str]:
    """The simulator in its own process on a loopback port, accepting ``key``; its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "controller.simulator", "--key", key, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on "), line
        yield line.split()[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def simulator_url() -> Iterator[str]:
    with running_simulator(TEST_KEY) as url:
        yield url


@pytest.fixture
def cli(database_url: str, simulator_url: str, tmp_path: Path) -> Cli:
    env = controller_env(database_url, simulator_url)
    (tmp_path / "config.toml").write_text("[vapi]\nrate_limit_per_second = 500\nburst = 50\n")
    return Cli(env, tmp_path)


def sim_stats(simulator_url: str) -> dict[str, object]:
    return dict(httpx.get(f"{simulator_url}/_sim/stats").json())
