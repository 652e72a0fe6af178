"""What the operator's commands read, on real Postgres: the history of Vapi writes (what
changed, why, redacted), the status rows with names and ``pending``, the overview header,
the audit log's retention, and a one-shot run that must not overwrite the daemon's view."""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state import queue, records
from desired_state.direct import direct
from desired_state.records import AuditEntry, StatusRow
from desired_state.sample import seed_clinics
from desired_state.tables import audit_log, organizations
from desired_state.views import load_history, load_overview, load_status_rows
from tests.conftest import TEST_KEY
from tests.integration.helpers import assistant_of_agent, update_agent


async def test_history_shows_a_drift_repair_newest_first_with_before_and_after(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        first, _ = await seed_clinics(conn, 2)
    await reconcile_pass(runtime)
    agent = first.agent_ids[0]
    sim.edit_behind_the_back(
        "assistant", assistant_of_agent(sim, agent)["id"], {"firstMessage": "Edited!"}
    )
    await reconcile_pass(runtime)

    async with runtime.engine.connect() as conn:
        newest, *older = await load_history(conn, org_id=first.org_id)
        everything = await load_history(conn, limit=3)

    assert newest["method"] == "PATCH"
    assert newest["cause"] == "drift"
    assert newest["agent_id"] == agent
    assert newest["name"] == "Clinic 00000"
    (change,) = newest["changes"]
    assert change["path"] == "firstMessage"
    assert change["before"] == "Edited!"
    assert [row["cause"] for row in older] == ["desired", "desired"]
    assert {row["org_id"] for row in older} == {first.org_id}
    assert all(row["method"] == "POST" for row in older)
    assert "name" in {c["path"] for c in older[0]["changes"]}
    assert len(everything) == 3
    assert everything[0]["at"] >= everything[-1]["at"]


async def test_the_master_key_never_reaches_the_audit_log(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime)
    await update_agent(platform, clinic.agent_ids[0], system_prompt=f"Never say {TEST_KEY}.")
    await reconcile_pass(runtime)

    async with runtime.engine.connect() as conn:
        dumped = await conn.execute(
            text("select string_agg(changes::text, '') from reconciler.audit_log")
        )
        history = await load_history(conn)

    assert TEST_KEY not in dumped.scalar_one()
    assert "Never say ***." in str(history[0]["changes"])


async def test_status_rows_hold_every_desired_organization_and_every_one_with_a_row(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        kept, suspended = await seed_clinics(conn, 2)
    await reconcile_pass(runtime)
    async with platform.begin() as conn:
        await conn.execute(
            update(organizations).where(organizations.c.id == suspended.org_id).values(status="x")
        )
        (fresh,) = await seed_clinics(conn, 1, start=2)

    async with runtime.engine.connect() as conn:
        rows = {row["org_id"]: row for row in await load_status_rows(conn)}
        only = await load_status_rows(conn, org_id=fresh.org_id)
        unknown = await load_status_rows(conn, org_id=uuid4())

    assert rows[kept.org_id]["state"] == "synced"
    assert rows[kept.org_id]["desired"] is True
    assert rows[suspended.org_id]["desired"] is False
    assert rows[suspended.org_id]["name"] == "Clinic 00001"
    assert rows[fresh.org_id]["state"] == "pending"
    assert [row["org_id"] for row in only] == [fresh.org_id]
    assert unknown == []


async def test_the_overview_counts_live_daemons_open_alerts_and_the_last_complete_pass(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 2)
    async with runtime.engine.begin() as conn:
        await queue.heartbeat(conn, replica_id="a", live_within=60)
        await records.report_replica(
            conn, replica_id="a", version="9.9.9", mode="observe", paused=True
        )
        await queue.heartbeat(conn, replica_id="gone", live_within=60)
        await conn.execute(
            text(
                "update reconciler.replicas set heartbeat_at = now() - interval '1 hour' "
                "where replica_id = 'gone'"
            )
        )
        await conn.execute(
            text(
                "insert into reconciler.alerts (key, status, reason, since) "
                "values ('org:x', 'firing', 'validation', now())"
            )
        )
    async with runtime.engine.connect() as conn:
        before = await load_overview(conn, live_within=60)
    await reconcile_pass(runtime)
    async with runtime.engine.connect() as conn:
        after = await load_overview(conn, live_within=60)

    (daemon,) = before.replicas
    assert (daemon.replica_id, daemon.version, daemon.mode, daemon.paused) == (
        "a",
        "9.9.9",
        "observe",
        True,
    )
    assert before.open_alerts == 1
    assert before.last_complete_pass is None
    assert after.last_complete_pass is not None
    assert after.last_complete_pass <= after.now


async def test_retention_deletes_only_rows_older_than_keep_days_in_batches(
    runtime: Runtime,
) -> None:
    entry = AuditEntry("r", None, "UpdateTool", "t", "PATCH", "/tool/{id}", 200, "ok", {})
    async with direct(runtime.engine).connection() as hot:
        await records.write_audit(hot, [entry] * 7)
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "update reconciler.audit_log set at = now() - interval '31 days' "
                "where id in (select id from reconciler.audit_log order by id limit 5)"
            )
        )

    async with runtime.engine.connect() as conn:
        removed = await records.trim_audit(conn, keep_days=30, batch=2)
        again = await records.trim_audit(conn, keep_days=30, batch=2)
        left = (await conn.execute(select(audit_log.c.id))).all()

    assert (removed, again, len(left)) == (5, 0, 2)


async def test_a_one_shot_pause_never_replaces_the_daemons_status_row(runtime: Runtime) -> None:
    known, new = uuid4(), uuid4()
    async with direct(runtime.engine).connection() as hot, hot.transaction():
        await records.write_statuses(hot, [StatusRow(known, "failed", "vapi said no")])
        await records.write_statuses(
            hot,
            [StatusRow(known, "paused", "paused"), StatusRow(new, "paused", "paused")],
            one_shot=True,
        )
    async with runtime.engine.connect() as conn:
        rows = {row["org_id"]: row for row in await load_status_rows(conn)}

    assert rows[known]["state"] == "failed"
    assert rows[known]["message"] == "vapi said no"
    assert rows[new]["state"] == "paused"
