"""The work queue on real Postgres: exclusive claims, leases, fencing, one more pass."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

import psycopg
import pytest
from loguru import logger
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import Settings
from controller.core.keys import TOOLS, WorkKey
from controller.core.outcome import OrgOutcome
from controller.daemon import settle
from controller.daemon.listener import listen
from controller.daemon.metrics import Metrics
from controller.daemon.settle import Finished, Settler
from controller.daemon.supervisor import Daemon
from controller.reconcile.runtime import Runtime
from controller.reconcile.status import Recorded
from desired_state import queue
from desired_state.load import load_status
from desired_state.queue import Claim, Completion
from desired_state.records import AuditEntry, Fence, WriteRecord
from desired_state.sample import seed_clinics
from tests.integration.claiming import claim, complete, settle_tools
from tests.integration.helpers import agent_row, until, update_agent

LAPSING_LEASE = 2.0
WRITTEN_AGO = 30.0


async def test_concurrent_claimers_never_get_the_same_organization(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 30)
    await settle_tools(runtime.engine)

    batches = await asyncio.gather(*(claim(runtime.engine, f"r{i}", limit=4) for i in range(8)))

    claimed = [c.key for batch in batches for c in batch]
    assert len(claimed) == 30
    assert len(set(claimed)) == 30
    assert await claim(runtime.engine, "late") == []


async def test_no_organization_is_claimed_while_the_tools_are_due(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 2)
    async with runtime.engine.begin() as conn:
        await queue.ensure_rows(conn)
    assert await claim(runtime.engine, "a") == []
    tools = await claim(runtime.engine, "a", tools=True)
    assert [c.key for c in tools] == [TOOLS]
    assert await claim(runtime.engine, "b") == []
    assert await complete(runtime.engine, tools[0])
    assert len(await claim(runtime.engine, "b")) == 2


@pytest.mark.both_schemas
async def test_a_change_during_a_reconcile_causes_exactly_one_more_pass(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await settle_tools(runtime.engine)
    (first,) = await claim(runtime.engine, "a")

    await update_agent(platform, clinic.agent_ids[0], system_prompt="one")
    await update_agent(platform, clinic.agent_ids[0], system_prompt="two")
    assert await complete(runtime.engine, first)

    (again,) = await claim(runtime.engine, "a")
    assert await complete(runtime.engine, again)
    assert await claim(runtime.engine, "a") == []


async def test_an_expired_lease_is_taken_over_and_the_old_holder_is_fenced_out(
    platform: AsyncEngine,
    runtime: Runtime,
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 1)
    await settle_tools(runtime.engine)
    # a lease long enough that no stall between the two claims lets it lapse before "b" asks
    (stale,) = await claim(runtime.engine, "a", lease=LAPSING_LEASE)
    assert await claim(runtime.engine, "b") == []
    await asyncio.sleep(LAPSING_LEASE + 0.1)  # the lease lapsed (it began before the sleep)

    (fresh,) = await claim(runtime.engine, "b")

    assert fresh.token > stale.token
    assert not await complete(runtime.engine, stale)
    assert await complete(runtime.engine, fresh)


@pytest.mark.both_schemas
async def test_a_permanent_failure_waits_for_a_change_of_its_rows(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await settle_tools(runtime.engine)
    (claimed,) = await claim(runtime.engine, "a")
    assert await complete(runtime.engine, claimed, due_in=None)
    assert await claim(runtime.engine, "a") == []

    await update_agent(platform, clinic.agent_ids[1], first_message="Fixed")

    assert [c.key for c in await claim(runtime.engine, "a")] == [clinic.org_id]


@pytest.mark.both_schemas
async def test_the_controllers_own_link_write_does_not_enqueue_its_org(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await settle_tools(runtime.engine)
    (claimed,) = await claim(runtime.engine, "a")
    assert await complete(runtime.engine, claimed)

    await update_agent(platform, clinic.agent_ids[0], vapi_assistant_id="assistant-1")

    assert await claim(runtime.engine, "a") == []
    assert await generation(runtime.engine, clinic.org_id) == claimed.generation


async def generation(engine: AsyncEngine, org_id: UUID) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("select generation from reconciler.work_items where org_id = :o"), {"o": org_id}
        )
    return int(found.scalar_one())


async def test_live_replicas_are_counted_to_divide_the_rate_budget(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        assert await queue.heartbeat(conn, replica_id="a", live_within=30) == 1
        assert await queue.heartbeat(conn, replica_id="b", live_within=30) == 2
        await queue.leave(conn, replica_id="b")
        assert await queue.heartbeat(conn, replica_id="a", live_within=30) == 1


async def test_a_replica_joining_or_leaving_is_announced_to_the_others(
    runtime: Runtime, settings: Settings
) -> None:
    """Replicas started together each count only themselves at first: the announcement
    lets each count again at once (their rate shares then add up to the budget)."""
    heard: list[str] = []
    wake = asyncio.Event()
    listening = asyncio.create_task(
        listen(settings.database.url, wake, on_replicas=lambda: heard.append("count"))
    )
    try:
        await asyncio.wait_for(wake.wait(), 10)
        assert heard == ["count"]  # on connecting: one may have joined meanwhile
        async with runtime.engine.begin() as conn:
            await queue.heartbeat(conn, replica_id="a", live_within=30)
        async with runtime.engine.begin() as conn:
            await queue.heartbeat(conn, replica_id="a", live_within=30)  # not a join
        async with runtime.engine.begin() as conn:
            await queue.leave(conn, replica_id="a")
        for _ in range(100):
            if len(heard) >= 3:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
    assert heard == ["count", "count", "count"]  # connected, joined, left


async def test_a_group_commit_records_only_the_claims_still_held(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 3)
    await settle_tools(runtime.engine)
    held = await claim(runtime.engine, "a", lease=0.2)
    await asyncio.sleep(0.3)
    (taken_over,) = await claim(runtime.engine, "b", limit=1)
    settler = Settler(runtime.engine)

    def finished(claimed: Claim) -> Finished:
        outcome = OrgOutcome(claimed.key, "failed", "boom", reason="vapi_rejected")
        return Finished(Completion(claimed, 5, 1, "boom"), Recorded(outcome, None))

    kept = await asyncio.gather(*(settler.settle(finished(c)) for c in held))

    assert dict(zip([c.key for c in held], kept, strict=True)) == {
        c.key: c.key != taken_over.key for c in held
    }
    async with runtime.engine.connect() as conn:
        statuses = {row["org_id"]: row for row in await load_status(conn)}
    assert set(statuses) == {c.key for c in held} - {taken_over.key}
    assert {(s["state"], s["consecutive_failures"]) for s in statuses.values()} == {("failed", 1)}


@pytest.mark.both_schemas
async def test_a_group_commit_lands_the_writes_records_of_the_claims_still_held_only(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 3)
    agent_of = {c.org_id: c.agent_ids[0] for c in clinics}
    await settle_tools(runtime.engine)
    held = await claim(runtime.engine, "a", lease=0.2)
    await asyncio.sleep(0.3)
    (taken_over,) = await claim(runtime.engine, "b", limit=1)

    def finished(claimed: Claim) -> Finished:
        agent_id = agent_of[claimed.key]
        audit = AuditEntry(
            "r",
            claimed.key,
            "CreateAssistant",
            f"asst-{agent_id}",
            "POST",
            "/assistant",
            201,
            "ok",
            {},
            made_at=time.monotonic() - WRITTEN_AGO,
        )
        write = WriteRecord(
            "assistant",
            str(agent_id),
            claimed.key,
            f"asst-{agent_id}",
            desired_hash="d",
            observed_hash="o",
            agent_id=agent_id,
            audit=audit,
        )
        fence = Fence(claimed.key, claimed.token)
        outcome = OrgOutcome(claimed.key, "synced", "converged")
        return Finished(Completion(claimed, 5, 0, None), Recorded(outcome, None, (write,), fence))

    kept = await Settler(runtime.engine).settle_all([finished(c) for c in held])

    assert kept == {c.key for c in held} - {taken_over.key}
    for c in held:
        link = (await agent_row(runtime, agent_of[c.key]))["vapi_assistant_id"]
        assert link == (None if c.key == taken_over.key else f"asst-{agent_of[c.key]}")
    async with runtime.engine.connect() as conn:
        found = await conn.execute(text("select owner_key, vapi_id from reconciler.vapi_objects"))
        registry = {row.owner_key: row.vapi_id for row in found}
    assert registry == {
        str(agent_of[c.key]): f"asst-{agent_of[c.key]}" for c in held if c.key != taken_over.key
    }
    async with runtime.engine.connect() as conn:  # what was done in Vapi, fenced or not
        audited = await conn.execute(
            text("select org_id, now() - at as age from reconciler.audit_log")
        )
        ages = {row.org_id: row.age.total_seconds() for row in audited}
    assert set(ages) == {c.key for c in held}
    assert all(WRITTEN_AGO - 5 < age < WRITTEN_AGO + 5 for age in ages.values()), ages


async def test_renewing_a_claim_completed_meanwhile_neither_hides_nor_loses_its_row(
    platform: AsyncEngine,
    runtime: Runtime,
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 1)
    await settle_tools(runtime.engine)
    (claimed,) = await claim(runtime.engine, "a")
    assert await complete(runtime.engine, claimed, due_in=0)

    async with runtime.engine.begin() as conn:  # the heartbeat raced the completion
        lost = await queue.renew(conn, [claimed], lease_seconds=60)

    assert lost == set()
    assert [c.key for c in await claim(runtime.engine, "b")] == [claimed.key]


async def test_renewing_a_claim_taken_over_reports_it_lost(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 1)
    await settle_tools(runtime.engine)
    (stale,) = await claim(runtime.engine, "a", lease=0.2)
    await asyncio.sleep(0.3)
    await claim(runtime.engine, "b")

    async with runtime.engine.begin() as conn:
        lost = await queue.renew(conn, [stale], lease_seconds=60)

    assert lost == {stale.key}


async def claimed_clinics(platform: AsyncEngine, runtime: Runtime, count: int) -> list[Claim]:
    """``count`` clinics seeded, the tools gate open, and every one claimed by "a"."""
    async with platform.begin() as conn:
        await seed_clinics(conn, count)
    await settle_tools(runtime.engine)
    return await claim(runtime.engine, "a")


def synced(claimed: Claim) -> Finished:
    outcome = OrgOutcome(claimed.key, "synced", "converged")
    return Finished(Completion(claimed, 5, 0, None), Recorded(outcome, None))


def counting_groups(settler: Settler, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each group ``settler`` commits, in order."""
    commit_once, groups = settler._commit_once, []

    async def counted(group: list[Finished]) -> set[WorkKey]:
        groups.append(len(group))
        return await commit_once(group)

    monkeypatch.setattr(settler, "_commit_once", counted)
    return groups


async def test_a_group_commit_chosen_as_a_deadlocks_victim_is_committed_again(
    platform: AsyncEngine, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = await claimed_clinics(platform, runtime, 2)
    settler = Settler(runtime.engine)
    commit_once, tries = settler._commit_once, []

    async def a_deadlock_first(group: list[Finished]) -> set[WorkKey]:
        tries.append(len(group))
        if len(tries) == 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return await commit_once(group)

    monkeypatch.setattr(settler, "_commit_once", a_deadlock_first)

    kept = await settler.settle_all([synced(c) for c in held])

    assert tries == [2, 2]
    assert kept == {c.key for c in held}
    async with runtime.engine.connect() as conn:
        statuses = {row["org_id"]: row["state"] for row in await load_status(conn)}
    assert statuses == {c.key: "synced" for c in held}


@pytest.mark.both_schemas
async def test_visits_finishing_within_a_commits_spacing_share_the_next_group(
    platform: AsyncEngine, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settle, "COMMIT_SPACING_SECONDS", 2.0)  # the first commit within it
    first, *others = await claimed_clinics(platform, runtime, 3)
    settler = Settler(runtime.engine)
    groups = counting_groups(settler, monkeypatch)

    assert await settler.settle(synced(first))  # a lone visit: committed at once
    kept = await asyncio.gather(*(settler.settle(synced(c)) for c in others))

    assert kept == [True, True]
    assert groups == [1, 2]
    async with runtime.engine.connect() as conn:
        statuses = {row["org_id"]: row["state"] for row in await load_status(conn)}
    assert statuses == {c.key: "synced" for c in [first, *others]}


async def test_a_group_commit_waits_out_the_spacing_only_while_few_rows_wait(
    platform: AsyncEngine, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settle, "COMMIT_SPACING_SECONDS", 2.0)
    monkeypatch.setattr(settle, "GROUP_ENOUGH", 2)
    first, second, *enough = await claimed_clinics(platform, runtime, 4)
    settler = Settler(runtime.engine)

    began = time.monotonic()
    await settler.settle(synced(first))
    await settler.settle(synced(second))  # alone, within the spacing: waits it out
    waited = time.monotonic() - began
    await asyncio.sleep(0.05)
    began = time.monotonic()
    await settler.settle_all([synced(c) for c in enough])  # enough to go at once
    enough_waited = time.monotonic() - began

    assert waited >= 2.0
    assert enough_waited < 1.0  # not the 1.9 s left of the spacing


async def test_a_caller_that_must_not_wait_hurries_the_group_waiting_out_the_spacing(
    platform: AsyncEngine, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settle, "COMMIT_SPACING_SECONDS", 30.0)
    first, second, third = await claimed_clinics(platform, runtime, 3)
    settler = Settler(runtime.engine)
    groups = counting_groups(settler, monkeypatch)
    await settler.settle(synced(first))

    spacing = asyncio.create_task(settler.settle(synced(second)))  # waits out the spacing
    await asyncio.sleep(0.3)
    assert not spacing.done()
    hurried = await asyncio.wait_for(settler.settle(synced(third), spaced=False), 10)

    assert hurried
    assert await asyncio.wait_for(spacing, 10)
    assert groups == [1, 2]


async def waiting_for_their_group(
    settler: Settler, claims: list[Claim]
) -> list[asyncio.Task[bool]]:
    """A visit per claim, each settling its outcome, once all of them wait for the group."""
    visits = [asyncio.create_task(settler.settle(synced(c))) for c in claims]
    await until(lambda: settler._rows_waiting == len(claims), "the visits to join the group")
    return visits


async def test_shutdown_commits_what_visits_cancelled_waiting_for_their_group_left(
    platform: AsyncEngine, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A visit cancelled at the end of shutdown's grace while it waited out the spacing has
    written to Vapi: its outcome is committed, and only claims with work left are released."""
    monkeypatch.setattr(settle, "COMMIT_SPACING_SECONDS", 30.0)
    first, *waiting, busy = await claimed_clinics(platform, runtime, 4)
    loop = Daemon(runtime, config_path=None, metrics=Metrics(), replica_id="a").claims
    await loop.settler.settle(synced(first))
    visits = await waiting_for_their_group(loop.settler, waiting)
    loop.inflight.update((c.key, (c, visit)) for c, visit in zip(waiting, visits, strict=True))
    loop.inflight[busy.key] = (busy, asyncio.create_task(asyncio.sleep(60)))  # still writing

    released = await asyncio.wait_for(loop.drain(grace_seconds=0.1), 10)

    assert released == [busy]
    async with runtime.engine.connect() as conn:
        statuses = {row["org_id"]: row["state"] for row in await load_status(conn)}
    assert {k: statuses.get(k) for k in (first.key, *(c.key for c in waiting), busy.key)} == {
        first.key: "synced",
        **{c.key: "synced" for c in waiting},
        busy.key: None,
    }
    assert await loop.settler.flush() == set()
    assert loop.settler._rows_waiting == 0


async def test_a_flush_that_cannot_commit_says_so_once_and_lands_nothing(
    platform: AsyncEngine, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settle, "COMMIT_SPACING_SECONDS", 30.0)
    first, *waiting = await claimed_clinics(platform, runtime, 3)
    settler = Settler(runtime.engine)
    await settler.settle(synced(first))
    visits = await waiting_for_their_group(settler, waiting)
    for visit in visits:
        visit.cancel()
    await asyncio.gather(*visits, return_exceptions=True)

    async def postgres_down(group: list[Finished]) -> set[WorkKey]:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(settler, "_commit_once", postgres_down)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    try:
        assert await settler.flush() == set()
    finally:
        logger.remove(sink)

    assert len(lines) == 1
    assert "the outcomes of 2 finished visits could not be recorded (OperationalError)" in lines[0]


async def test_releasing_a_claim_completed_meanwhile_keeps_its_schedule(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    """Shutdown may release a claim whose group commit landed as its visit was cancelled:
    the row keeps the schedule its completion gave it."""
    (claimed,) = await claimed_clinics(platform, runtime, 1)
    assert await Settler(runtime.engine).settle(synced(claimed))  # due in 5 s

    async with runtime.engine.begin() as conn:
        await queue.release(conn, [claimed])
        due_in = await conn.scalar(
            text(
                "select extract(epoch from due_at - now()) from reconciler.work_items"
                " where org_id = :org"
            ),
            {"org": claimed.key},
        )

    assert due_in > 3
