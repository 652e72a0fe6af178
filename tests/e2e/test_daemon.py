"""``vapi-reconciler run`` as a real process: triggers, replicas, pausing, shutdown."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_KEY
from tests.e2e.daemon import DaemonProcess, Database, Simulator, seed, wait_until
from tests.e2e.tcp_proxy import PostgresProxy
from tests.receiver import Receiver

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
BASE = """
[vapi]
rate_limit_per_second = 400
burst = 20
poll_interval_seconds = 1
[controller]
resync_interval_seconds = 3600
lease_seconds = 3
reload_interval_seconds = 0.5
shutdown_grace_seconds = 5
{extra}
"""


def config(**controller: Any) -> str:
    lines = [f"{k} = {_toml(v)}" for k, v in controller.items()]
    return BASE.format(extra="\n".join(lines))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return str(value)


@pytest.fixture
def daemons(controller_url: str, simulator_url: str, tmp_path: Path) -> Iterator[Any]:
    """Daemons run under the least-privilege role (deploy/postgres/controller-role.sql)."""
    started: list[DaemonProcess] = []

    def start(name: str = "a", body: str | None = None) -> DaemonProcess:
        daemon = DaemonProcess(
            database_url=controller_url,
            simulator_url=simulator_url,
            workdir=tmp_path,
            name=name,
            config=body or config(),
        )
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


@pytest.fixture
def sim(simulator_url: str) -> Simulator:
    return Simulator(simulator_url)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.engine.dispose()


def converged(sim: Simulator, db: Database, orgs: int) -> bool:
    return sim.stats()["assistants"] == 2 * orgs and db.states() == {"synced": orgs}


def test_an_agent_row_updated_while_idle_reaches_vapi_without_waiting_for_a_resync(
    daemons: Any, sim: Simulator, db: Database, database_url: str
) -> None:
    clinics = seed(database_url, 3)
    daemon = daemons()
    wait_until(lambda: converged(sim, db, 3), timeout=30, what="convergence")
    assert daemon.health("/readyz") == 200
    before = len(sim.writes())

    db.execute(
        "update agents set system_prompt = 'New prompt' where id = :id", id=clinics[0].agent_ids[0]
    )
    took = wait_until(lambda: len(sim.writes()) > before, timeout=5, what="the PATCH")

    new = sim.writes()[before:]
    assert [w["method"] for w in new] == ["PATCH"]
    assert new[0]["body"]["model"]["messages"][0]["content"] == "New prompt"
    assert took < 5


def test_two_daemons_converge_every_org_once_without_duplicate_writes(
    daemons: Any, sim: Simulator, db: Database, database_url: str
) -> None:
    seed(database_url, 40)
    sim.faults(latency_seconds=0.02)
    daemons("a")
    daemons("b")

    wait_until(lambda: converged(sim, db, 40), timeout=60, what="convergence")

    posts = [w for w in sim.writes() if w["method"] == "POST"]
    assert len(posts) == 6 + 80
    assert len(sim.writes()) == 86
    wait_until(
        lambda: (
            db.scalar("select count(*) from reconciler.work_items where lease_owner is not null")
            == 0
        ),
        timeout=15,
        what="both daemons idle",
    )
    assert len(sim.writes()) == 86


def test_a_killed_daemons_organizations_are_taken_over_after_its_lease_expires(
    daemons: Any, sim: Simulator, db: Database, database_url: str
) -> None:
    seed(database_url, 20)
    sim.faults(latency_seconds=0.15)
    replicas = {name: daemons(name, config(concurrency=2)) for name in ("a", "b")}
    wait_until(lambda: len(sim.writes()) >= 12, timeout=30, what="both at work")
    # the one holding leases dies (which replica claimed first is a race of their start-ups)
    doomed = db.scalar(
        "select lease_owner from reconciler.work_items where lease_owner is not null "
        "group by lease_owner order by count(*) desc limit 1"
    )
    replicas[doomed].terminate(signal.SIGKILL)
    held = db.scalar("select count(*) from reconciler.work_items where lease_owner = :r", r=doomed)

    wait_until(lambda: converged(sim, db, 20), timeout=60, what="takeover")

    assert held >= 1
    assert (
        db.scalar("select count(*) from reconciler.work_items where lease_owner = :r", r=doomed)
        == 0
    )
    assert sim.stats()["assistants"] == 40
    assert len([w for w in sim.writes() if w["method"] == "POST"]) == 46


def test_pausing_through_the_config_file_stops_writes_and_resuming_converges(
    daemons: Any, sim: Simulator, db: Database, database_url: str
) -> None:
    seed(database_url, 30)
    sim.faults(latency_seconds=0.1)
    daemon = daemons("a", config(concurrency=1))
    wait_until(lambda: len(sim.writes()) >= 8, timeout=30, what="some writes")

    daemon.write_config(config(concurrency=1, paused=True))
    # an organization recorded paused: the pause is in force, and (one at a time) the visit
    # in flight when it came into force has ended, its last write included
    wait_until(lambda: db.states().get("paused", 0) >= 1, timeout=30, what="the pause")
    held = len(sim.writes())
    time.sleep(2.0)
    assert len(sim.writes()) == held
    assert sim.stats()["assistants"] < 60

    daemon.write_config(config(concurrency=1, paused=False))
    sim.faults(latency_seconds=0.0)
    wait_until(lambda: converged(sim, db, 30), timeout=60, what="convergence after resume")


@pytest.mark.parametrize("control", ["paused_orgs", "observe"])
def test_a_paused_org_or_observe_mode_holds_writes_until_lifted(
    daemons: Any, sim: Simulator, db: Database, database_url: str, control: str
) -> None:
    clinics = seed(database_url, 3)
    daemon = daemons()
    wait_until(lambda: converged(sim, db, 3), timeout=30, what="convergence")
    held_org = str(clinics[0].org_id)
    if control == "paused_orgs":
        daemon.write_config(config(paused_orgs=[held_org]))
    else:
        daemon.write_config(config(mode="observe"))
    wait_until(lambda: daemon.reloads() >= 1, timeout=30, what="the reload in force")
    before = len(sim.writes())

    db.execute("update agents set system_prompt = 'Held' where org_id = :org", org=held_org)
    expected = "paused" if control == "paused_orgs" else "progressing"
    wait_until(
        lambda: (
            db.scalar("select state from reconciler.org_status where org_id = :o", o=held_org)
            == expected
        ),
        timeout=10,
        what=expected,
    )
    time.sleep(1.0)
    assert len(sim.writes()) == before

    daemon.write_config(config())
    wait_until(lambda: len(sim.writes()) == before + 2, timeout=10, what="the held writes")
    wait_until(lambda: converged(sim, db, 3), timeout=10, what="convergence")


def test_vapi_answering_503_for_a_while_is_survived_and_converges_after(
    daemons: Any, sim: Simulator, db: Database, database_url: str
) -> None:
    clinics = seed(database_url, 2)
    daemons()
    wait_until(lambda: converged(sim, db, 2), timeout=30, what="convergence")
    sim.faults(error_rate=1.0)
    db.execute(
        "update agents set system_prompt = 'During outage' where id = :id",
        id=clinics[0].agent_ids[0],
    )
    wait_until(
        lambda: (
            db.scalar(
                "select state from reconciler.org_status where org_id = :o",
                o=str(clinics[0].org_id),
            )
            == "progressing"
        ),
        timeout=10,
        what="a failed attempt",
    )

    sim.faults(error_rate=0.0)

    wait_until(lambda: converged(sim, db, 2), timeout=30, what="recovery")
    assert any(w["method"] == "PATCH" for w in sim.writes())


def test_sigterm_mid_pass_exits_zero_within_the_grace_period(
    daemons: Any, sim: Simulator, database_url: str
) -> None:
    seed(database_url, 20)
    sim.faults(latency_seconds=0.3)
    daemon = daemons("a", config(concurrency=4))
    wait_until(lambda: len(sim.writes()) >= 8, timeout=30, what="work in flight")

    start = time.monotonic()
    code = daemon.terminate(signal.SIGTERM)

    assert code == 0
    assert time.monotonic() - start < 5 + 3


def test_postgres_going_away_under_the_daemon_is_survived_and_nothing_is_lost(
    sim: Simulator, db: Database, database_url: str, simulator_url: str, tmp_path: Path
) -> None:
    clinics = seed(database_url, 2)
    proxy = PostgresProxy(database_url)
    daemon = DaemonProcess(
        database_url=proxy.url,
        simulator_url=simulator_url,
        workdir=tmp_path,
        name="a",
        config=config(),
    )
    try:
        wait_until(lambda: converged(sim, db, 2), timeout=30, what="convergence")
        before = len(sim.writes())

        proxy.cut()
        wait_until(lambda: daemon.health("/readyz") == 503, timeout=10, what="not ready")
        db.execute(
            "update agents set system_prompt = 'Changed during the outage' where id = :id",
            id=clinics[1].agent_ids[1],
        )
        time.sleep(2)
        assert len(sim.writes()) == before
        assert daemon.health("/healthz") == 200

        proxy.restore()

        wait_until(lambda: len(sim.writes()) == before + 1, timeout=30, what="the held change")
        wait_until(lambda: daemon.health("/readyz") == 200, timeout=10, what="ready again")
        assert daemon.process.poll() is None
    finally:
        daemon.close()
        proxy.close()


def test_drift_and_deletions_made_in_vapi_are_seen_by_the_cache_and_corrected(
    daemons: Any, sim: Simulator, db: Database, database_url: str
) -> None:
    seed(database_url, 2)
    daemons(
        "a",
        BASE.format(extra="").replace(
            "poll_interval_seconds = 1", "poll_interval_seconds = 0.5\nrelist_interval_seconds = 2"
        ),
    )
    wait_until(lambda: converged(sim, db, 2), timeout=30, what="convergence")
    assistants = httpx.get(f"{sim.url}/assistant", headers=AUTH).json()
    edited, deleted = assistants[0]["id"], assistants[1]["id"]
    before = len(sim.writes())

    httpx.patch(
        f"{sim.url}/assistant/{edited}", headers=AUTH, json={"name": "Edited behind its back"}
    ).raise_for_status()
    httpx.delete(f"{sim.url}/assistant/{deleted}", headers=AUTH).raise_for_status()

    wait_until(lambda: len(sim.writes()) >= before + 4, timeout=15, what="the corrections")
    # the controller's own writes: the correction may land between the two made here
    new = [
        (w["method"], w["vapi_id"])
        for w in sim.writes()[before:]
        if not (w["method"] == "DELETE" and w["vapi_id"] == deleted)
        and w.get("body") != {"name": "Edited behind its back"}
    ]
    assert ("PATCH", edited) in new
    assert any(method == "POST" for method, _ in new)
    wait_until(lambda: converged(sim, db, 2), timeout=10, what="convergence again")


def test_the_daemon_pages_once_across_a_restart_and_a_hanging_receiver_never_blocks_it(
    daemons: Any, sim: Simulator, db: Database, database_url: str
) -> None:
    receiver = Receiver()
    alerting = (
        f"[alerting]\nunreconciled_after_seconds = 1\nevaluate_interval_seconds = 0.5\n"
        f"delivery_timeout_seconds = 1\ndelivery_backoff_max_seconds = 1\n"
        f'webhook_url = "{receiver.url}/hook"\n'
    )
    body = config() + alerting
    try:
        clinics = seed(database_url, 2)
        sim.faults(scripted=[{"kind": "400", "method": "POST", "route": "/assistant", "count": 1}])
        first = daemons("a", body)
        wait_until(lambda: receiver.events() == ["firing"], timeout=20, what="one page")
        assert first.terminate() == 0

        receiver.mode = "hang"
        second = daemons("b", body)
        # its start-up (an interpreter's, on a loaded machine several seconds) is no part of
        # the 10s in which the write must come despite the hang
        wait_until(lambda: second.health("/readyz") == 200, timeout=60, what="b ready")
        before = len(sim.writes())
        db.execute(
            "update agents set system_prompt = 'Still reconciling' where id = :id",
            id=clinics[1].agent_ids[0],
        )
        wait_until(lambda: len(sim.writes()) > before, timeout=10, what="a write despite the hang")
        receiver.mode = "up"

        wait_until(lambda: converged(sim, db, 2), timeout=30, what="convergence")
        wait_until(
            lambda: receiver.events() == ["firing", "resolved"],
            timeout=30,
            what="exactly one resolution",
        )
        time.sleep(1.5)
        assert receiver.events() == ["firing", "resolved"], [r.body for r in receiver.received]
        assert second.health("/metrics") == 200
    finally:
        receiver.close()


def test_a_rejected_key_raises_one_controller_wide_alert_that_never_shows_the_key(
    database_url: str, simulator_url: str, tmp_path: Path
) -> None:
    receiver = Receiver()
    body = config() + (
        f"[alerting]\ncontroller_down_after_seconds = 1\n"
        f'evaluate_interval_seconds = 0.5\nwebhook_url = "{receiver.url}/hook"\n'
    )
    daemon = DaemonProcess(
        database_url=database_url,
        simulator_url=simulator_url,
        workdir=tmp_path,
        name="a",
        config=body,
        key="sk-wrong-key-that-must-never-leak",
    )
    try:
        wait_until(lambda: receiver.events() == ["firing"], timeout=20, what="the page")
        time.sleep(1.5)
        assert receiver.events() == ["firing"]
        page = receiver.received[0]
        assert page.body["key"] == "controller:vapi_key_rejected"
        assert daemon.health("/readyz") == 503
        assert daemon.terminate() == 0
        logged = (tmp_path / "a.log").read_text()
        assert "sk-wrong-key-that-must-never-leak" not in logged + page.raw.decode()
    finally:
        daemon.close()
        receiver.close()
