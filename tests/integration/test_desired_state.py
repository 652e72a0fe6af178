"""The controller's own schema beside the platform's, audit rows, bad rows, one-org passes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.embedded import scratch_database
from desired_state.migrate import HERE, head_revision, migrate
from desired_state.sample import seed_clinics
from desired_state.tables import audit_log
from tests.integration.helpers import assistants_of, status_of, update_agent, writes


def test_migrate_works_on_platform_tables_someone_else_created_with_extra_columns(
    pg_admin_url: str,
) -> None:
    from desired_state.engine import sync_engine

    ddl = (HERE / "platform_schema.sql").read_text()
    with scratch_database(pg_admin_url, prefix="vapi_reconciler_foreign") as url:
        engine = sync_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(ddl)
            conn.execute(text("alter table agents add column tenant_notes text default 'x'"))
            conn.execute(text("alter table organizations add column plan text"))
        assert migrate(url) == head_revision()
        assert migrate(url, with_platform_schema=True) == head_revision()
        with engine.connect() as conn:
            tools = conn.execute(text("select count(*) from reconciler.tool_definitions"))
            assert tools.scalar_one() == 6
            columns = conn.execute(
                text(
                    "select count(*) from information_schema.columns "
                    "where table_name = 'agents' and column_name = 'tenant_notes'"
                )
            )
            assert columns.scalar_one() == 1
        engine.dispose()


def test_the_seed_file_ships_inside_the_package() -> None:
    seed = Path(HERE) / "seed" / "platform_tools.json"
    assert seed.is_file()


async def test_every_write_to_vapi_leaves_one_audit_row(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 3)
    await reconcile_pass(runtime)

    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(audit_log))).mappings().all()
    assert len(rows) == len(sim.writes) == 12
    assert {(r["method"], r["outcome"]) for r in rows} == {("POST", "ok")}
    assert {r["vapi_id"] for r in rows} == {w.vapi_id for w in sim.writes}


async def test_a_bad_agent_row_fails_its_org_with_a_clear_message_and_others_converge(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        bad, good = await seed_clinics(conn, 2)
    await update_agent(platform, bad.agent_ids[0], name="A name far longer than forty characters!!")

    outcome = await reconcile_pass(runtime)

    assert not outcome.converged
    status = await status_of(runtime, bad.org_id)
    assert status["state"] == "failed"
    assert f"agent {bad.agent_ids[0]}: name is 41 characters" in status["message"]
    assert len(assistants_of(sim, bad.org_id)) == 1
    assert (await status_of(runtime, good.org_id))["state"] == "synced"
    async with runtime.engine.connect() as conn:
        errors = await conn.execute(
            select(func.count()).select_from(audit_log).where(audit_log.c.outcome != "ok")
        )
    assert errors.scalar_one() == 0


async def test_a_pass_for_one_org_writes_only_that_org_and_the_shared_tools(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        chosen, other = await seed_clinics(conn, 2)

    outcome = await reconcile_pass(runtime, org_ids=[chosen.org_id])

    assert [o.org_id for o in outcome.orgs] == [chosen.org_id]
    assert len(assistants_of(sim, chosen.org_id)) == 2
    assert assistants_of(sim, other.org_id) == []
    assert len(writes(sim, "POST", "tool")) == 6
