"""The change triggers on every path a platform write takes: NULL organization ids, org_id
changes, deletes, bulk statements, as the platform's own roles (Supabase's ``authenticated``
with a JWT naming an organization, ``service_role``) and as its owner."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from desired_state.sample import seed_clinics

live = pytest.mark.parametrize("platform_schema", ["live"], indirect=True)


async def generations(platform: AsyncEngine) -> dict[UUID, int]:
    async with platform.connect() as conn:
        rows = await conn.execute(text("select org_id, generation from reconciler.work_items"))
    return {row.org_id: row.generation for row in rows}


async def bumped_by(platform: AsyncEngine, before: Mapping[UUID, int]) -> dict[UUID, int]:
    """Organizations whose work row moved since ``before``, and by how many changes."""
    after = await generations(platform)
    return {o: g - before.get(o, 0) for o, g in after.items() if g != before.get(o, 0)}


async def act_as(conn: AsyncConnection, role: str, org_id: UUID | None = None) -> None:
    """Become one of the platform's roles for the rest of the transaction."""
    claims = {"role": role, "app_metadata": {"org_id": str(org_id) if org_id else None}}
    await conn.execute(text(f"set local role {role}"))
    await conn.execute(
        text("select set_config('request.jwt.claims', :c, true)"), {"c": json.dumps(claims)}
    )


async def insert_agent(conn: AsyncConnection, org_id: UUID | None, role: str = "inbound") -> UUID:
    agent_id = uuid.uuid4()
    await conn.execute(
        text(
            "insert into agents (id, org_id, role, name, system_prompt) "
            "values (:id, :org, :role, 'Front desk', 'Be kind')"
        ),
        {"id": agent_id, "org": org_id, "role": role},
    )
    return agent_id


@live
@pytest.mark.parametrize("role", ["postgres", "service_role"])
async def test_an_agent_without_an_organization_is_written_and_enqueues_nothing(
    platform: AsyncEngine, role: str
) -> None:
    before = await generations(platform)

    async with platform.begin() as conn:
        if role != "postgres":
            await act_as(conn, role)
        agent_id = await insert_agent(conn, None)
        await conn.execute(
            text("update agents set system_prompt = 'Be brief' where id = :a"), {"a": agent_id}
        )
        await conn.execute(text("delete from agents where id = :a"), {"a": agent_id})

    assert await bumped_by(platform, before) == {}


@live
async def test_a_member_of_an_organization_adds_its_agent_through_row_level_security(
    platform: AsyncEngine,
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    before = await generations(platform)

    async with platform.begin() as conn:
        await act_as(conn, "authenticated", clinic.org_id)
        await insert_agent(conn, clinic.org_id, role="support")
        seen = await conn.execute(text("select count(*) from agents"))
        assert seen.scalar_one() == 3

    assert await bumped_by(platform, before) == {clinic.org_id: 1}


@live
async def test_attaching_and_detaching_an_agent_enqueues_the_organization_it_joins_or_leaves(
    platform: AsyncEngine,
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
        agent_id = await insert_agent(conn, None, role="support")
    before = await generations(platform)

    async with platform.begin() as conn:
        await act_as(conn, "service_role")
        for org_id in (clinic.org_id, None):
            await conn.execute(
                text("update agents set org_id = :o where id = :a"), {"o": org_id, "a": agent_id}
            )

    assert await bumped_by(platform, before) == {clinic.org_id: 2}


async def test_moving_an_agent_between_organizations_enqueues_both(
    platform: AsyncEngine,
) -> None:
    async with platform.begin() as conn:
        old, new = await seed_clinics(conn, 2)
    before = await generations(platform)

    async with platform.begin() as conn:
        await conn.execute(
            text("update agents set org_id = :o, role = 'support' where id = :a"),
            {"o": new.org_id, "a": old.agent_ids[0]},
        )

    assert await bumped_by(platform, before) == {old.org_id: 1, new.org_id: 1}


@pytest.mark.both_schemas
async def test_deleting_an_organization_enqueues_it_once(platform: AsyncEngine) -> None:
    async with platform.begin() as conn:
        gone, kept = await seed_clinics(conn, 2)
    before = await generations(platform)

    async with platform.begin() as conn:
        await conn.execute(text("delete from organizations where id = :o"), {"o": gone.org_id})

    bumped = await bumped_by(platform, before)
    assert set(bumped) == {gone.org_id}
    assert kept.org_id not in bumped


@live
async def test_a_bulk_statement_over_agents_with_and_without_an_organization_succeeds(
    platform: AsyncEngine,
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 3)
        for _ in range(3):
            await insert_agent(conn, None)
    before = await generations(platform)

    async with platform.begin() as conn:
        await act_as(conn, "service_role")
        updated = await conn.execute(text("update agents set active = not active"))
        deleted = await conn.execute(
            text("delete from agents where org_id is null or role = 'outbound'")
        )

    assert (updated.rowcount, deleted.rowcount) == (9, 6)
    assert await bumped_by(platform, before) == {c.org_id: 3 for c in clinics}


@live
async def test_an_integration_without_an_organization_is_written(platform: AsyncEngine) -> None:
    async with platform.begin() as conn:
        await act_as(conn, "service_role")
        await conn.execute(
            text("insert into integrations (org_id, provider, config) values (null, 'vapi', '{}')")
        )
        changed = await conn.execute(text("update integrations set connected = true"))

    assert changed.rowcount == 1


async def test_enqueue_ignores_a_null_organization(platform: AsyncEngine) -> None:
    before = await generations(platform)

    async with platform.begin() as conn:
        await conn.execute(text("select reconciler.enqueue(null)"))

    assert await bumped_by(platform, before) == {}
