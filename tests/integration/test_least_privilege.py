"""The controller's role (deploy/postgres/controller-role.sql) can do its job and no more.
Every other integration test already runs the controller under it."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.preflight import setup_problem
from controller.reconcile.runtime import Runtime
from desired_state.revision import RECORD_WRITE
from desired_state.sample import seed_clinics


@pytest.mark.parametrize(
    "statement",
    [
        "update agents set system_prompt = 'leak' where id = :agent",
        "update agents set org_id = org_id where id = :agent",
        "delete from agents where id = :agent",
        "insert into organizations (name) values ('forged')",
        "update organizations set status = 'suspended'",
        "update integrations set config = '{}'",
        "create table public.exfiltrate (x text)",
        "create table reconciler.exfiltrate (x text)",
        "select reconciler.enqueue(gen_random_uuid())",
        "update reconciler.alembic_version set version_num = '0001'",
    ],
)
async def test_the_controller_role_is_refused_everything_else(
    platform: AsyncEngine, runtime: Runtime, statement: str
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    with pytest.raises(ProgrammingError, match="permission denied"):
        async with runtime.engine.begin() as conn:
            await conn.execute(text(statement), {"agent": clinic.agent_ids[0]})


async def test_the_controller_role_writes_what_it_owns(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text("update agents set vapi_assistant_id = 'a-1' where id = :agent"),
            {"agent": clinic.agent_ids[0]},
        )
        await conn.execute(
            text(
                "insert into org_tools (org_id, tool_name, vapi_tool_id) "
                "values (:org, 'endCall', 't-1')"
            ),
            {"org": clinic.org_id},
        )
        await conn.execute(text("delete from reconciler.work_items"))
        role = (await conn.execute(text("select current_user"))).scalar_one()
    async with platform.connect() as conn:
        linked = await conn.execute(
            text("select vapi_assistant_id from agents where id = :agent"),
            {"agent": clinic.agent_ids[0]},
        )
        assert linked.scalar_one() == "a-1"
    assert role.startswith("vapi_reconciler")


async def test_a_role_that_may_not_record_writes_is_refused_at_start(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    """A role set up before migration 0010 (and PUBLIC's execute revoked) could write to
    Vapi but record nothing: the set-up check refuses it, naming the script to run again."""
    async with runtime.engine.connect() as conn:
        role = (await conn.execute(text("select current_user"))).scalar_one()
        assert await setup_problem(conn) is None
    revoke = f"revoke execute on function {RECORD_WRITE} from public, {role}"
    async with platform.begin() as conn:
        await conn.execute(text(revoke))

    async with runtime.engine.connect() as conn:
        problem = await setup_problem(conn)

    assert problem is not None
    assert "record_write" in str(problem)
    assert "controller-role.sql" in str(problem)
