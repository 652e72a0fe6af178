"""Each bug the fault campaign found, as a deterministic test on real Postgres and the
simulator (issue 13): no write without a lease, no drift blessed, no stale cache, cleared
fields cleared, deletions seen."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import VapiSettings
from controller.core.actions import LinkAssistant
from controller.core.keys import TOOLS
from controller.core.plan import PruneDecision
from controller.daemon.listener import listen
from controller.reconcile.apply import Applier
from controller.reconcile.chain import Chain, DirectRecorder
from controller.reconcile.full_pass import plan_pass, reconcile_pass
from controller.reconcile.lease import ClaimLease
from controller.reconcile.observe import ObservedCache
from controller.reconcile.prune import PassPruneLimit
from controller.reconcile.runtime import Runtime
from controller.reconcile.status import Recorded
from controller.simulator import SimulatorState
from desired_state.load import load_desired
from desired_state.records import Fence
from desired_state.sample import seed_clinics
from desired_state.tables import agents, vapi_objects
from tests.integration.helpers import (
    agent_row,
    assistant_of_agent,
    running,
    status_of,
    until,
    update_agent,
    with_controller,
    writes,
)
from tests.integration.test_daemon_path import quick


async def chain_over(runtime: Runtime) -> Chain:
    cache = ObservedCache(runtime.client)
    await cache.relist()
    return Chain(runtime, cache)


async def desired_of(runtime: Runtime, org_id: Any) -> Any:
    async with runtime.engine.connect() as conn:
        return await load_desired(conn, org_ids=[org_id])


async def reconciled(chain: Chain, org_id: Any, *, lease: ClaimLease | None = None) -> Any:
    """The daemon's unit of work on one organization (deletions allowed, a live lease unless
    one is given), recorded at once."""
    runtime = chain.runtime
    return await chain.reconcile_org(
        org_id,
        await desired_of(runtime, org_id),
        reconcile_id="t",
        limit=PassPruneLimit(PruneDecision(True, 0)),
        recorder=DirectRecorder(runtime),
        lease=lease or ClaimLease.asked(at=0, seconds=1e9, margin=0),
        fence=None,
    )


async def test_a_dashboard_edit_landing_during_a_patch_of_another_field_stays_drift(
    platform: AsyncEngine,
    runtime: Runtime,
    sim: SimulatorState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime)
    agent_id = clinic.agent_ids[0]
    vapi_id = assistant_of_agent(sim, agent_id)["id"]
    await update_agent(platform, agent_id, system_prompt="A new prompt.")
    real_update = sim.update

    def edited_meanwhile(resource: Any, target: str, body: Any) -> dict[str, Any]:
        if target == vapi_id and "model" in body:  # the dashboard wins the race
            sim.edit_behind_the_back(
                "assistant", vapi_id, {"voice": {"provider": "vapi", "voiceId": "Kylie"}}
            )
        return real_update(resource, target, body)

    monkeypatch.setattr(sim, "update", edited_meanwhile)
    await reconcile_pass(runtime)
    monkeypatch.setattr(sim, "update", real_update)
    sim.writes.clear()

    pending = await plan_pass(runtime)
    await reconcile_pass(runtime)

    assert pending.has_changes, "the dashboard's voice edit is drift, not a new baseline"
    assert [w.body.keys() for w in writes(sim, "PATCH")] == [{"voice"}]
    assert sim.objects["assistant"][vapi_id]["voice"]["voiceId"] != "Kylie"


async def test_setting_first_message_to_null_clears_the_greeting(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime)
    agent_id = clinic.agent_ids[0]
    assert assistant_of_agent(sim, agent_id).get("firstMessage")

    await update_agent(platform, agent_id, first_message=None)
    await reconcile_pass(runtime)

    assert assistant_of_agent(sim, agent_id).get("firstMessage") is None
    assert not (await plan_pass(runtime)).has_changes


async def test_a_patch_answered_404_makes_the_assistant_missing_and_it_is_recreated_at_once(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime)
    agent_id = clinic.agent_ids[0]
    chain = await chain_over(runtime)  # its cache still holds the assistant deleted below
    gone = assistant_of_agent(sim, agent_id)["id"]
    sim.objects["assistant"].pop(gone)
    await update_agent(platform, agent_id, system_prompt="Changed while it was gone.")

    outcome = await reconciled(chain, clinic.org_id)

    assert outcome.state == "synced", outcome.message
    again = assistant_of_agent(sim, agent_id)
    assert again["id"] != gone
    assert again["model"]["messages"][0]["content"] == "Changed while it was gone."
    assert (await agent_row(runtime, agent_id))["vapi_assistant_id"] == again["id"]


async def test_a_ghost_in_the_cache_is_confirmed_gone_before_anything_is_pruned(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    """Another replica pruned the assistant this replica's cache still names for the agent;
    the agent's real assistant must be linked, never pruned as an orphan."""
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime)
    agent_id = clinic.agent_ids[0]
    real = assistant_of_agent(sim, agent_id)
    ghost = sim.create("assistant", {**_strip(real), "name": "ghost"})["id"]
    async with platform.begin() as conn:
        await conn.execute(
            text("update agents set vapi_assistant_id = :g where id = :a"),
            {"g": ghost, "a": agent_id},
        )
    runtime = with_controller(runtime, prune=True, max_prune_fraction=1.0)
    chain = await chain_over(runtime)
    sim.objects["assistant"].pop(ghost)  # deleted elsewhere; this cache has not seen it
    sim.writes.clear()

    outcome = await reconciled(chain, clinic.org_id)

    assert outcome.state == "synced", outcome.message
    assert not writes(sim, "DELETE")
    assert real["id"] in sim.objects["assistant"]
    assert (await agent_row(runtime, agent_id))["vapi_assistant_id"] == real["id"]


async def test_a_late_duplicate_is_deleted_and_the_linked_one_kept_even_with_prune_off(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime)
    agent_id = clinic.agent_ids[0]
    linked = assistant_of_agent(sim, agent_id)
    late = sim.create("assistant", _strip(linked))["id"]  # a stale replica's create
    sim.writes.clear()

    outcome = await reconcile_pass(runtime)

    assert outcome.converged
    assert [w.vapi_id for w in writes(sim, "DELETE")] == [late]
    assert assistant_of_agent(sim, agent_id)["id"] == linked["id"]


async def test_a_write_whose_lease_expired_is_abandoned_and_leaves_no_doubt(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime, org_ids=[])  # the tools only
    chain = await chain_over(runtime)
    sim.writes.clear()
    paused_past_its_lease = ClaimLease.asked(at=-100.0, seconds=60, margin=12)

    outcome = await reconciled(chain, clinic.org_id, lease=paused_past_its_lease)

    assert (outcome.state, outcome.reason) == ("progressing", "lease_lost")
    assert not sim.writes, "nothing was sent"
    async with runtime.engine.connect() as conn:
        doubts = await conn.execute(select(vapi_objects).where(vapi_objects.c.state == "creating"))
    assert doubts.first() is None, "an unsent create leaves no intent to doubt"


async def test_a_plan_paused_after_its_first_create_leaves_no_intent_for_the_next(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The intents of a plan's creates are recorded together before the first is sent; a
    create the plan never got to leaves no doubt behind."""
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime, org_ids=[])  # the tools only
    chain = await chain_over(runtime)
    sim.writes.clear()
    monkeypatch.setattr(runtime, "writes_allowed", lambda key: not writes(sim, "POST"))

    await reconciled(chain, clinic.org_id)

    (created,) = writes(sim, "POST")
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(vapi_objects.c.owner_key, vapi_objects.c.state))).all()
    assert [r.owner_key for r in rows if r.state == "creating"] == []
    assert {r.owner_key for r in rows if r.state == "present"} >= {
        str(assistant["metadata"]["agent_id"])
        for assistant in sim.objects["assistant"].values()
        if assistant["id"] == created.vapi_id
    }


class FailingRecorder:
    """A settle that never lands (Postgres went away, or the process died before it)."""

    async def record(self, recorded: Recorded) -> bool:
        raise OSError("connection lost")


@pytest.mark.both_schemas
async def test_writes_whose_settle_never_landed_are_adopted_not_repeated(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    """An organization's writes are recorded with its claim's completion: lost with it,
    the creates' intents stay, and the next pass adopts what they made."""
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime, org_ids=[])  # the tools only
    chain = await chain_over(runtime)
    with pytest.raises(OSError, match="connection lost"):
        await chain.reconcile_org(
            clinic.org_id,
            await desired_of(runtime, clinic.org_id),
            reconcile_id="t",
            limit=PassPruneLimit(PruneDecision(True, 0)),
            recorder=FailingRecorder(),
            lease=ClaimLease.asked(at=0, seconds=1e9, margin=0),
            fence=None,
        )
    created = {w.vapi_id for w in writes(sim, "POST", "assistant")}
    assert len(created) == len(clinic.agent_ids)
    for agent_id in clinic.agent_ids:
        assert (await agent_row(runtime, agent_id))["vapi_assistant_id"] is None
    sim.writes.clear()

    outcome = await reconcile_pass(runtime)

    assert outcome.converged
    assert writes(sim, "POST") == []
    assert {a["id"] for a in sim.objects["assistant"].values()} == created
    for agent_id in clinic.agent_ids:
        linked = (await agent_row(runtime, agent_id))["vapi_assistant_id"]
        assert linked == assistant_of_agent(sim, agent_id)["id"]


@pytest.mark.both_schemas
async def test_writes_made_before_an_outage_ends_the_visit_are_still_recorded(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage after the creates (Vapi's, on the reads that follow, or one statement's)
    ends the visit with no outcome: what already reached Vapi is recorded all the same."""
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime, org_ids=[])  # the tools only
    chain = await chain_over(runtime)

    def vapi_went_away(*args: Any, **kwargs: Any) -> None:
        raise OSError("connection reset")

    monkeypatch.setattr(chain, "_judge", vapi_went_away)
    with pytest.raises(OSError, match="connection reset"):
        await reconciled(chain, clinic.org_id)

    for agent_id in clinic.agent_ids:
        linked = (await agent_row(runtime, agent_id))["vapi_assistant_id"]
        assert linked == assistant_of_agent(sim, agent_id)["id"]
    async with runtime.engine.connect() as conn:
        states = (await conn.execute(select(vapi_objects.c.state))).scalars().all()
    assert sorted(states) == ["present"] * (len(clinic.agent_ids) + len(sim.objects["tool"]))


async def test_a_stale_claim_cannot_move_an_agents_assistant_link(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime)
    agent_id = clinic.agent_ids[0]
    before = (await agent_row(runtime, agent_id))["vapi_assistant_id"]
    copy_of = sim.create("assistant", _strip(assistant_of_agent(sim, agent_id)))["id"]
    stale = Applier(runtime.client, runtime.engine, "t", fence=Fence(clinic.org_id, token=-1))
    result = None
    with pytest.raises(Exception, match="not linked"):
        result = await stale.apply(LinkAssistant(clinic.org_id, agent_id, copy_of))

    assert result is None
    assert (await agent_row(runtime, agent_id))["vapi_assistant_id"] == before


async def test_a_delete_is_announced_to_every_replica(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, settings: Any
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime)
    heard: list[str] = []
    wake = asyncio.Event()
    listening = asyncio.create_task(listen(settings.database.url, wake, on_gone=heard.append))
    try:
        await asyncio.wait_for(wake.wait(), 10)  # connected
        async with platform.begin() as conn:
            await conn.execute(text("delete from agents where id = :a"), {"a": clinic.agent_ids[1]})
        orphan = assistant_of_agent(sim, clinic.agent_ids[1])["id"]
        await reconcile_pass(with_controller(runtime, prune=True, max_prune_fraction=1.0))
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.05)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
    assert heard == [f"assistant:{orphan}"]


async def test_the_first_listing_after_a_start_marks_the_tools_due(runtime: Runtime) -> None:
    assert TOOLS in await ObservedCache(runtime.client).relist()


async def test_status_is_never_synced_for_an_agent_left_without_its_assistant(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime)
    sim.objects["assistant"].pop(assistant_of_agent(sim, clinic.agent_ids[0])["id"])

    await reconcile_pass(runtime)

    assert (await status_of(runtime, clinic.org_id))["state"] == "synced"
    assert (
        len(
            [
                a
                for a in sim.objects["assistant"].values()
                if a["metadata"]["org_id"] == str(clinic.org_id)
            ]
        )
        == 2
    )
    async with runtime.engine.connect() as conn:
        linked = await conn.execute(
            select(agents.c.vapi_assistant_id).where(agents.c.org_id == clinic.org_id)
        )
    assert all(row.vapi_assistant_id in sim.objects["assistant"] for row in linked)


def _strip(body: dict[str, Any]) -> dict[str, Any]:
    """A create body from an assistant as returned (no server-side fields)."""
    kept = (
        "name",
        "model",
        "voice",
        "transcriber",
        "server",
        "maxDurationSeconds",
        "metadata",
        "firstMessage",
    )
    return copy.deepcopy({k: body[k] for k in kept if k in body})


async def test_an_assistant_deleted_in_the_dashboard_is_recreated_within_seconds(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    """No write, no row change: only a complete listing sees it, and a small account is
    re-listed every poll interval (``relist_budget_share``)."""
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    fast = VapiSettings.model_validate(
        {**runtime.settings.vapi.model_dump(), "poll_interval_seconds": 0.3}
    )
    runtime = quick(
        Runtime(runtime.engine, runtime.client, runtime.settings.model_copy(update={"vapi": fast}))
    )
    async with running(runtime):

        async def created() -> bool:
            return any(
                a.get("metadata", {}).get("agent_id") == str(clinic.agent_ids[0])
                for a in sim.objects["assistant"].values()
            )

        await until(created, "the first convergence")
        gone = assistant_of_agent(sim, clinic.agent_ids[0])["id"]
        sim.objects["assistant"].pop(gone)

        async def recreated() -> bool:
            return any(
                a.get("metadata", {}).get("agent_id") == str(clinic.agent_ids[0])
                for a in sim.objects["assistant"].values()
            )

        await until(recreated, "the deleted assistant re-created")
    assert (await agent_row(runtime, clinic.agent_ids[0]))["vapi_assistant_id"] != gone


async def test_a_tool_deleted_in_vapi_is_recreated_and_its_dangling_id_unlinked(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    await reconcile_pass(runtime)
    gone = next(iter(sim.objects["tool"]))
    sim.objects["tool"].pop(gone)

    await reconcile_pass(runtime)
    await reconcile_pass(runtime)

    assert len(sim.objects["tool"]) == 6
    for agent_id in clinic.agent_ids:
        ids = assistant_of_agent(sim, agent_id)["model"]["toolIds"]
        assert gone not in ids
        assert set(ids) == set(sim.objects["tool"])
    assert not (await plan_pass(runtime)).has_changes


async def test_the_daemon_recreates_a_tool_deleted_in_the_dashboard_and_relinks_it(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    fast = VapiSettings.model_validate(
        {**runtime.settings.vapi.model_dump(), "poll_interval_seconds": 0.3}
    )
    settings = runtime.settings.model_copy(update={"vapi": fast})
    runtime = quick(Runtime(runtime.engine, runtime.client, settings))
    async with running(runtime):

        async def linked_everywhere() -> bool:
            tools = set(sim.objects["tool"])
            found = [
                a
                for a in sim.objects["assistant"].values()
                if a.get("metadata", {}).get("org_id") == str(clinic.org_id)
            ]
            return (
                len(tools) == 6
                and len(found) == 2
                and all(set(a["model"]["toolIds"]) == tools for a in found)
            )

        await until(linked_everywhere, "the first convergence")
        gone = next(iter(sim.objects["tool"]))
        sim.objects["tool"].pop(gone)
        await until(
            lambda: _true(gone not in sim.objects["tool"] and len(sim.objects["tool"]) == 6),
            "the tool re-created",
        )
        await until(linked_everywhere, "every assistant relinked to the new tool")


async def _true(value: bool) -> bool:
    return value
