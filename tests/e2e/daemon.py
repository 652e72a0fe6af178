"""Helpers to run ``vapi-reconciler run`` as a real process and watch what it does."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from desired_state.engine import async_engine, sqlalchemy_url
from desired_state.sample import SampleOrg, seed_clinics
from tests.conftest import BACKEND, TEST_KEY


def seed(database_url: str, count: int) -> list[SampleOrg]:
    async def run() -> list[SampleOrg]:
        engine = async_engine(database_url, pool_size=1)
        async with engine.begin() as conn:
            made = await seed_clinics(conn, count)
        await engine.dispose()
        return made

    return asyncio.run(run())


def controller_env(database_url: str, simulator_url: str, key: str = TEST_KEY) -> dict[str, str]:
    """The environment of a controller process in these tests (no stray VAPI_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAPI_")}
    env.update(
        DATABASE_URL=database_url,
        VAPI_BASE_URL=simulator_url,
        VAPI_PRIVATE_KEY=key,
        BACKEND_URL=BACKEND,
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll ``check`` until it holds; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class DaemonProcess:
    def __init__(
        self,
        *,
        database_url: str,
        simulator_url: str,
        workdir: Path,
        name: str,
        config: str,
        key: str = TEST_KEY,
        log_level: str = "INFO",
    ) -> None:
        self.name = name
        self.port = free_port()
        self.config = workdir / f"{name}.toml"
        self.write_config(config)
        self.log = (workdir / f"{name}.log").open("w")
        env = controller_env(database_url, simulator_url, key)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller",
                "--log-level",
                log_level,
                "--log-json",
                "run",
                "--config",
                str(self.config),
                "--replica-id",
                name,
            ],
            env=env,
            cwd=workdir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def write_config(self, body: str) -> None:
        self.config.write_text(f'{body}\n[server]\nlisten = "127.0.0.1:{self.port}"\n')

    def health(self, path: str) -> int:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=1).status_code
        except httpx.HTTPError:
            return 0

    def reloads(self) -> float:
        """Config reloads put in force so far (``/metrics``; 0 while it does not answer)."""
        try:
            page = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return 0.0
        series = 'vapi_reconciler_config_reloads_total{result="success"} '
        found = [line for line in page.splitlines() if line.startswith(series)]
        return float(found[0].removeprefix(series)) if found else 0.0

    def terminate(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


class Simulator:
    def __init__(self, url: str) -> None:
        self.url = url

    def writes(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/_sim/writes").json())

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_sim/stats").json())

    def faults(self, **values: Any) -> None:
        httpx.post(f"{self.url}/_sim/faults", json=values).raise_for_status()


class Database:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(sqlalchemy_url(url))

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def execute(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql), params)

    def states(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("select state, count(*) from reconciler.org_status group by state")
            )
            return {r[0]: r[1] for r in rows}
