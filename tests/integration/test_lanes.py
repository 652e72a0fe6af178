"""Priority lanes on real Postgres: interactive work first, bulk work never starved, one
order for every replica. Time is set in the rows (``due_at``, ``interactive_since``), never
slept through."""

from __future__ import annotations

import asyncio
import uuid
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core.keys import WorkKey
from controller.reconcile.runtime import Runtime
from desired_state import queue
from desired_state.queue import Lane, bulk_slots
from desired_state.sample import seed_clinics
from tests.integration.claiming import claim, complete, settle_tools
from tests.integration.helpers import update_agent

INTERACTIVE, BULK = Lane.INTERACTIVE, Lane.BULK


async def queued(engine: AsyncEngine, count: int, *, lane: Lane, waited: float) -> list[UUID]:
    """``count`` work rows marked due in ``lane``, oldest first: the last has waited
    ``waited`` seconds, each one before it a millisecond more."""
    keys = [uuid.uuid4() for _ in range(count)]
    async with engine.begin() as conn:
        await queue.ensure_rows(conn, keys)
        await queue.mark_due(conn, keys, lane=lane)
        await conn.execute(
            text("""
                update reconciler.work_items w
                set due_at = now() - make_interval(secs => :waited + (:count - k.n) / 1000.0),
                    interactive_since = case when w.interactive_since is not null
                      then now() - make_interval(secs => :waited + (:count - k.n) / 1000.0) end
                from unnest(cast(:keys as uuid[])) with ordinality as k(org_id, n)
                where w.org_id = k.org_id
            """),
            {"keys": keys, "waited": waited, "count": count},
        )
    return keys


async def row(engine: AsyncEngine, key: UUID) -> tuple[bool, bool]:
    """Is the row interactive; is it due an hour ago or earlier."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "select interactive_since is not null, due_at <= now() - interval '1 hour' "
                "from reconciler.work_items where org_id = :o"
            ),
            {"o": key},
        )
    interactive, old = found.one()
    return bool(interactive), bool(old)


def lanes(claims: list[queue.Claim]) -> list[Lane]:
    return [c.lane for c in claims]


def keys(claims: list[queue.Claim]) -> list[WorkKey]:
    return [c.key for c in claims]


def test_a_claim_keeps_a_fifth_for_bulk_and_always_room_for_one_interactive_row() -> None:
    assert [bulk_slots(n) for n in (0, 1, 2, 5, 10, 241, 256)] == [0, 0, 1, 1, 2, 49, 52]


async def test_an_interactive_row_is_claimed_before_a_thousand_older_bulk_rows(
    runtime: Runtime,
) -> None:
    await settle_tools(runtime.engine)
    await queued(runtime.engine, 1000, lane=BULK, waited=3600)
    (edit,) = await queued(runtime.engine, 1, lane=INTERACTIVE, waited=0)

    (first,) = await claim(runtime.engine, "a", limit=1)

    assert (first.key, first.lane) == (edit, INTERACTIVE)


async def test_a_claim_takes_interactive_rows_oldest_first_and_the_oldest_bulk_rows_in_its_share(
    runtime: Runtime,
) -> None:
    await settle_tools(runtime.engine)
    bulk = await queued(runtime.engine, 30, lane=BULK, waited=3600)
    interactive = await queued(runtime.engine, 30, lane=INTERACTIVE, waited=60)

    claims = await claim(runtime.engine, "a", limit=10)

    assert keys(claims) == interactive[:8] + bulk[:2]
    assert lanes(claims) == [INTERACTIVE] * 8 + [BULK] * 2


async def test_interactive_rows_fill_the_bulk_share_when_little_bulk_is_due(
    runtime: Runtime,
) -> None:
    await settle_tools(runtime.engine)
    (bulk,) = await queued(runtime.engine, 1, lane=BULK, waited=3600)
    await queued(runtime.engine, 30, lane=INTERACTIVE, waited=60)

    claims = await claim(runtime.engine, "a", limit=10)

    assert lanes(claims) == [INTERACTIVE] * 9 + [BULK]
    assert claims[-1].key == bulk


async def test_bulk_rows_fill_what_interactive_work_leaves(runtime: Runtime) -> None:
    await settle_tools(runtime.engine)
    bulk = await queued(runtime.engine, 30, lane=BULK, waited=3600)
    (edit,) = await queued(runtime.engine, 1, lane=INTERACTIVE, waited=0)

    claims = await claim(runtime.engine, "a", limit=10)

    assert keys(claims) == [edit, *bulk[:9]]


async def test_bulk_work_keeps_progressing_while_interactive_work_keeps_arriving(
    runtime: Runtime,
) -> None:
    await settle_tools(runtime.engine)
    bulk = await queued(runtime.engine, 20, lane=BULK, waited=3600)
    bulk_claimed: list[WorkKey] = []

    for _ in range(10):  # 10 new interactive rows a round, 8 claimed: they never run out
        await queued(runtime.engine, 10, lane=INTERACTIVE, waited=0)
        claims = await claim(runtime.engine, "a", limit=10)
        assert lanes(claims) == [INTERACTIVE] * 8 + [BULK] * 2
        bulk_claimed += [c.key for c in claims if c.lane is BULK]
        for claimed in claims:
            assert await complete(runtime.engine, claimed)

    assert bulk_claimed == bulk


async def test_two_claimers_share_one_order_and_never_take_the_same_row(
    runtime: Runtime,
) -> None:
    await settle_tools(runtime.engine)
    bulk = await queued(runtime.engine, 20, lane=BULK, waited=3600)
    interactive = await queued(runtime.engine, 20, lane=INTERACTIVE, waited=60)

    a, b = await asyncio.gather(
        claim(runtime.engine, "a", limit=10), claim(runtime.engine, "b", limit=10)
    )

    assert not set(keys(a)) & set(keys(b))
    assert set(keys(a)) | set(keys(b)) == set(interactive[:16]) | set(bulk[:4])
    assert lanes(a) == lanes(b) == [INTERACTIVE] * 8 + [BULK] * 2


@pytest.mark.both_schemas
async def test_changes_made_through_the_platforms_triggers_are_interactive(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 2)
    await settle_tools(runtime.engine)
    await queued(runtime.engine, 20, lane=BULK, waited=3600)

    claims = await claim(runtime.engine, "a", limit=10)

    assert set(keys(claims[:2])) == {c.org_id for c in clinics}
    assert lanes(claims) == [INTERACTIVE] * 2 + [BULK] * 8
    for claimed in claims:
        assert await complete(runtime.engine, claimed)

    await update_agent(platform, clinics[1].agent_ids[0], system_prompt="Edited")

    (edit,) = await claim(runtime.engine, "a", limit=1)
    assert (edit.key, edit.lane) == (clinics[1].org_id, INTERACTIVE)


async def test_a_completion_returns_a_row_to_the_bulk_lane(runtime: Runtime) -> None:
    await settle_tools(runtime.engine)
    (key,) = await queued(runtime.engine, 1, lane=INTERACTIVE, waited=0)
    (claimed,) = await claim(runtime.engine, "a")

    assert await complete(runtime.engine, claimed, due_in=0)

    (again,) = await claim(runtime.engine, "a")
    assert (again.key, again.lane) == (key, BULK)


@pytest.mark.both_schemas
async def test_a_change_during_a_reconcile_keeps_the_row_interactive_for_its_next_pass(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await settle_tools(runtime.engine)
    (claimed,) = await claim(runtime.engine, "a")

    await update_agent(platform, clinic.agent_ids[0], system_prompt="Edited mid-reconcile")
    assert await complete(runtime.engine, claimed)

    (again,) = await claim(runtime.engine, "a")
    assert (again.key, again.lane) == (clinic.org_id, INTERACTIVE)


async def test_a_bulk_mark_never_demotes_an_interactive_row_nor_delays_a_due_one(
    runtime: Runtime,
) -> None:
    await settle_tools(runtime.engine)
    (edit,) = await queued(runtime.engine, 1, lane=INTERACTIVE, waited=7200)
    (old,) = await queued(runtime.engine, 1, lane=BULK, waited=7200)

    async with runtime.engine.begin() as conn:
        await queue.mark_due(conn, None, lane=BULK)
        await queue.mark_due(conn, [old], lane=INTERACTIVE)

    assert await row(runtime.engine, edit) == (True, True)
    assert await row(runtime.engine, old) == (True, True)


async def test_a_released_claim_keeps_its_lane(runtime: Runtime) -> None:
    await settle_tools(runtime.engine)
    (key,) = await queued(runtime.engine, 1, lane=INTERACTIVE, waited=0)
    held = await claim(runtime.engine, "a")

    async with runtime.engine.begin() as conn:
        await queue.release(conn, held)

    (again,) = await claim(runtime.engine, "b")
    assert (again.key, again.lane) == (key, INTERACTIVE)
