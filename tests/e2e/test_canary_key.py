"""The master key never leaves the process except in the Authorization header to Vapi.

A whole scenario runs with a canary key: cold start under faults, a careless Vapi whose
errors quote the key back, a failing organization that pages and resolves, DEBUG logging,
every CLI command and every HTTP endpoint. Then every byte the controller wrote (logs, every
row of every table, alert payloads, HTTP answers, command output, request bodies sent to
Vapi) is searched for the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from desired_state.engine import sqlalchemy_url
from tests.e2e.conftest import Cli, running_simulator
from tests.e2e.daemon import DaemonProcess, Simulator, controller_env, seed, wait_until
from tests.receiver import Receiver

CANARY = "sk-canary-7b1e9d04-5a3c-4f2e-9c61-0d8e2f4a6b13"
PER_ORG_KEY = "org-key-canary-never-used-2c4e"


@pytest.fixture
def canary_simulator() -> Iterator[Simulator]:
    with running_simulator(CANARY) as url:
        yield Simulator(url)


def every_row(database_url: str) -> str:
    """Every row of every table the controller can write, as text (``integrations`` is the
    platform's, where the per-organization key was planted)."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                text(
                    "select schemaname, tablename from pg_tables "
                    "where schemaname in ('public', 'reconciler') "
                    "and tablename <> 'integrations'"
                )
            ).all()
            return "\n".join(
                str(row[0])
                for schema, table in tables
                for row in conn.execute(text(f'select t::text from "{schema}"."{table}" t'))
            )
    finally:
        engine.dispose()


def test_the_canary_key_appears_in_nothing_the_controller_wrote(
    database_url: str,
    controller_url: str,
    canary_simulator: Simulator,
    tmp_path: Path,
) -> None:
    sim = canary_simulator
    receiver = Receiver()
    clinics = seed(database_url, 4)
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.begin() as conn:
        conn.execute(
            text("insert into integrations (org_id, provider, config) values (:o, 'vapi', :c)"),
            {"o": clinics[0].org_id, "c": json.dumps({"vapi_api_key": PER_ORG_KEY})},
        )
    engine.dispose()
    sim.faults(
        echo_credentials=True,
        error_rate=0.1,
        scripted=[{"kind": "400", "method": "POST", "route": "/assistant", "count": 10_000}],
    )
    body = (
        "[vapi]\nrate_limit_per_second = 400\nburst = 20\npoll_interval_seconds = 1\n"
        "[controller]\nresync_interval_seconds = 3600\nbackoff_base_seconds = 0.2\n"
        "backoff_max_seconds = 1\n"
        "[alerting]\nunreconciled_after_seconds = 1\nevaluate_interval_seconds = 0.5\n"
        f'delivery_backoff_max_seconds = 1\nwebhook_url = "{receiver.url}/hook"\n'
    )
    daemon = DaemonProcess(
        database_url=controller_url,
        simulator_url=sim.url,
        workdir=tmp_path,
        name="canary",
        config=body,
        key=CANARY,
        log_level="DEBUG",
    )
    written: list[str] = []
    try:
        wait_until(lambda: "firing" in receiver.events(), timeout=30, what="a page")
        sim.faults(error_rate=0.0, scripted=[])
        touch = create_engine(sqlalchemy_url(database_url))
        with touch.begin() as conn:  # a rejected row waits for a change: the platform's edit
            conn.execute(text("update agents set system_prompt = system_prompt || ' '"))
        touch.dispose()
        wait_until(lambda: "resolved" in receiver.events(), timeout=60, what="the resolution")
        for path in ("/metrics", "/healthz", "/readyz"):
            written.append(httpx.get(f"http://127.0.0.1:{daemon.port}{path}").text)
        assert daemon.terminate() == 0
    finally:
        daemon.close()
        receiver.close()

    cli = Cli(controller_env(controller_url, sim.url, key=CANARY), tmp_path)
    for command in (["plan"], ["plan", "--json"], ["status"], ["status", "--json"], ["reconcile"]):
        done = cli(*command)
        written += [done.stdout, done.stderr]
    unreachable = Cli({**cli.env, "VAPI_BASE_URL": "http://127.0.0.1:9"}, tmp_path)
    failed = unreachable("plan", timeout=120)
    assert failed.returncode == 1
    written += [failed.stdout, failed.stderr]

    written.append((tmp_path / "canary.log").read_text())
    written += [r.raw.decode() + json.dumps(r.headers) for r in receiver.received]
    written.append(every_row(database_url))
    written.append(json.dumps(sim.writes()))
    everything = "\n".join(written)

    assert CANARY not in everything
    assert PER_ORG_KEY not in everything
    assert "***" in every_row(database_url), "Vapi quoted the key back: the redacted copy is stored"
    assert "integrations[vapi].config.vapi_api_key" in everything
    assert "vapi_reconciler_security_findings" in everything
