"""The controller on the live platform schema (tests/platform/voxanne-live.sql): its shape,
row-level security for its role, ghost rows, and ``org_tools`` without ``definition_hash``."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core.desired import tool_rows_digest
from controller.core.outcome import OrgOutcome, links_to_record
from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.runtime import Runtime
from desired_state.direct import direct
from desired_state.engine import sync_engine
from desired_state.load import load_desired
from desired_state.records import ToolLink, replace_org_tools
from desired_state.sample import seed_clinics
from desired_state.shape import PlatformShapeError, engine_shape, policy_sql, read_shape
from desired_state.unusable import (
    AGENT_ACTIVE_FLAGS_DISAGREE,
    AGENT_MISSING_VALUE,
    AGENT_OF_MISSING_ORG,
    AGENT_WITHOUT_ORG_ID,
    count_unusable_rows,
)
from tests.conftest import ROLE_SQL, run_script
from tests.integration.helpers import status_of

live = pytest.mark.parametrize("platform_schema", ["live"], indirect=True)
both = pytest.mark.both_schemas


async def drop_controller_policies(platform: AsyncEngine, role: str) -> None:
    async with platform.begin() as conn:
        policies = await conn.execute(
            text("select polname, polrelid::regclass::text as tbl from pg_policy")
        )
        for name, table in list(policies):
            if name.startswith(f"{role}_"):
                await conn.execute(text(f'drop policy "{name}" on {table}'))


async def count_agents(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("select count(*) from agents"))).scalar_one())


async def insert_agent(platform: AsyncEngine, org_id: uuid.UUID | None, **values: object) -> None:
    row = {"org_id": org_id, "name": "Ghost", "system_prompt": "Boo", "role": "inbound", **values}
    async with platform.begin() as conn:
        await conn.execute(
            text(
                f"insert into agents ({', '.join(row)}) values ({', '.join(':' + k for k in row)})"
            ),
            row,
        )


@live
async def test_the_live_schema_has_no_problem_for_the_controller_role_and_no_definition_hash(
    runtime: Runtime,
) -> None:
    async with runtime.engine.connect() as conn:
        shape = await read_shape(conn)

    assert shape.problems == ()
    assert not shape.has("org_tools", "definition_hash")
    assert shape.has("agents", "voice_stability")
    assert shape.has("agents", "is_active")


@live
async def test_without_its_policies_the_controller_role_sees_no_agent_and_the_shape_says_how_to_fix(
    platform: AsyncEngine, runtime: Runtime, controller_role: str
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 2)
    await drop_controller_policies(platform, controller_role)

    assert await count_agents(platform) == 4
    assert await count_agents(runtime.engine) == 0
    async with runtime.engine.connect() as conn:
        shape = await read_shape(conn)
        with pytest.raises(PlatformShapeError, match="row-level security hides rows"):
            await load_desired(conn)
    assert policy_sql("agents", "select", controller_role) in {p.fix_sql for p in shape.problems}
    assert {(p.table, p.what.split(" for ")[-1]) for p in shape.problems} == {
        ("organizations", "SELECT"),
        ("agents", "SELECT"),
        ("agents", "UPDATE"),
        ("integrations", "SELECT"),
        ("org_tools", "SELECT"),
        ("org_tools", "INSERT"),
        ("org_tools", "UPDATE"),
        ("org_tools", "DELETE"),
    }

    async with platform.begin() as conn:
        for problem in shape.problems:
            await conn.execute(text(problem.fix_sql))

    assert await count_agents(runtime.engine) == 4
    async with runtime.engine.connect() as conn:
        assert (await read_shape(conn)).problems == ()


@live
async def test_with_its_policies_the_controller_role_sees_every_row_and_writes_what_it_owns(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 3))[0]
        await conn.execute(
            text("insert into integrations (org_id, provider) values (:org, 'calendar')"),
            {"org": clinic.org_id},
        )
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
        await conn.execute(text("update org_tools set vapi_tool_id = 't-2'"))
        changed = await conn.execute(text("delete from org_tools where vapi_tool_id = 't-2'"))
        seen = await conn.execute(
            text("select (select count(*) from organizations), (select count(*) from integrations)")
        )

    assert changed.rowcount == 1
    assert tuple(seen.one()) == (3, 1)
    assert await count_agents(runtime.engine) == 6
    async with platform.connect() as conn:
        linked = await conn.execute(
            text("select vapi_assistant_id from agents where id = :agent"),
            {"agent": clinic.agent_ids[0]},
        )
        assert linked.scalar_one() == "a-1"


async def test_a_missing_column_and_a_missing_grant_are_problems_whose_fix_works(
    platform: AsyncEngine, runtime: Runtime, controller_role: str
) -> None:
    async with platform.begin() as conn:
        await conn.execute(text("alter table agents drop column max_tokens"))
        await conn.execute(text(f'revoke delete on org_tools from "{controller_role}"'))
    async with runtime.engine.connect() as conn:
        shape = await read_shape(conn)

    assert [(p.table, p.what) for p in shape.problems] == [
        ("agents", "column max_tokens is missing"),
        ("org_tools", f"role {controller_role} may not delete rows"),
    ]
    async with platform.begin() as conn:
        for problem in shape.problems:
            await conn.execute(text(problem.fix_sql))
    async with runtime.engine.connect() as conn:
        assert (await read_shape(conn)).problems == ()


async def test_optional_columns_may_be_absent_without_a_problem(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        await conn.execute(text("alter table org_tools drop column definition_hash"))
        for column in ("voice_stability", "voice_similarity_boost", "vapi_phone_number_id"):
            await conn.execute(text(f"alter table agents drop column {column}"))
    async with runtime.engine.connect() as conn:
        shape = await read_shape(conn)

    assert shape.problems == ()
    assert not shape.has("org_tools", "definition_hash")
    assert not shape.has("agents", "vapi_phone_number_id")


@both
async def test_org_tools_are_written_and_read_with_a_definition_hash_only_where_it_exists(
    platform: AsyncEngine, runtime: Runtime, platform_schema: str
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    names = ("endCall", "end_call", "endcall", "Zeta", "a-b", "ab")  # any collation's order
    links = {name: ToolLink(name, f"t-{i}", f"{i}" * 64) for i, name in enumerate(names)}
    shape = await engine_shape(runtime.engine)
    async with direct(runtime.engine).connection() as hot, hot.transaction():
        await replace_org_tools(hot, {clinic.org_id: links}, shape=shape)
        await replace_org_tools(hot, {clinic.org_id: links}, shape=shape)
    async with runtime.engine.connect() as conn:
        desired = await load_desired(conn)
        batch = await load_desired(conn, org_ids=[clinic.org_id])

    hashed = platform_schema == "contract"
    rows = {
        (n, link.vapi_tool_id, link.definition_hash if hashed else None)
        for n, link in links.items()
    }
    assert desired.org_tools[clinic.org_id] == tool_rows_digest(rows)
    assert batch.org_tools == {clinic.org_id: tool_rows_digest(rows)}


@both
async def test_a_synced_organization_s_tool_links_are_not_rewritten_on_the_next_visit(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    """The live ``org_tools`` has no ``definition_hash``: what it holds is compared without
    one, or every visit would rewrite the rows."""
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await reconcile_pass(runtime)
    async with runtime.engine.connect() as conn:
        desired = await load_desired(conn, org_ids=[clinic.org_id])

    synced = OrgOutcome(clinic.org_id, "synced", "")
    assert desired.org_tools[clinic.org_id]
    assert links_to_record(synced, desired, desired.tool_ids) is None


@live
async def test_ghost_agents_are_skipped_counted_and_stop_no_organization(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await insert_agent(platform, None)
    await insert_agent(platform, uuid.uuid4())
    await insert_agent(platform, clinic.org_id, role=None)
    async with runtime.engine.connect() as conn:
        desired = await load_desired(conn)
        counts = await count_unusable_rows(conn)

    outcome = await reconcile_pass(runtime)

    assert set(desired.orgs) == {clinic.org_id}
    assert {a.agent_id for a in desired.orgs[clinic.org_id].agents} == set(clinic.agent_ids)
    assert counts == {
        AGENT_WITHOUT_ORG_ID: 1,
        AGENT_OF_MISSING_ORG: 1,
        AGENT_MISSING_VALUE: 1,
        AGENT_ACTIVE_FLAGS_DISAGREE: 0,
    }
    assert outcome.converged
    assert (await status_of(runtime, clinic.org_id))["state"] == "synced"


@live
async def test_an_agent_follows_active_and_a_disagreeing_is_active_is_only_counted(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        on, off = await seed_clinics(conn, 2)
        await conn.execute(
            text("update agents set is_active = false where id = :a"), {"a": on.agent_ids[0]}
        )
        await conn.execute(
            text("update agents set active = false, is_active = true where org_id = :o"),
            {"o": off.org_id},
        )
    async with runtime.engine.connect() as conn:
        desired = await load_desired(conn)
        counts = await count_unusable_rows(conn)

    assert {a.agent_id for a in desired.orgs[on.org_id].agents} == set(on.agent_ids)
    assert desired.orgs[off.org_id].agents == ()
    assert counts[AGENT_ACTIVE_FLAGS_DISAGREE] == 3


@both
async def test_the_role_script_runs_again_and_gives_policies_only_where_rls_is_on(
    database_url: str,
    platform: AsyncEngine,
    runtime: Runtime,
    controller_role: str,
    platform_schema: str,
) -> None:
    engine = sync_engine(database_url)
    try:
        run_script(engine, ROLE_SQL.read_text().replace("vapi_reconciler", controller_role))
    finally:
        engine.dispose()
    async with platform.connect() as conn:
        policies = await conn.execute(
            text(
                "select polrelid::regclass::text, count(*) from pg_policy "
                "where polname like :mine group by 1"
            ),
            {"mine": f"{controller_role}_%"},
        )
        counts = dict(policies.all())
    async with runtime.engine.connect() as conn:
        shape = await read_shape(conn)

    assert shape.problems == ()
    expected = {"organizations": 1, "agents": 2, "integrations": 1, "org_tools": 4}
    assert counts == (expected if platform_schema == "live" else {})
