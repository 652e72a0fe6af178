"""Only ours; tenant isolation; legacy adoption."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.sample import seed_clinics
from tests.integration.helpers import (
    agent_row,
    assistant_of_agent,
    status_of,
    update_agent,
    with_controller,
    writes,
)

LEGACY_BODY = {
    "name": "Old receptionist",
    "model": {
        "provider": "openai",
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "Legacy prompt"}],
    },
    "metadata": {"crm": "keep-me"},
}


async def test_a_legacy_assistant_named_by_the_agent_is_adopted_and_tagged(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    legacy = sim.create("assistant", LEGACY_BODY)
    await update_agent(platform, clinic.agent_ids[0], vapi_assistant_id=legacy["id"])
    sim.writes.clear()

    outcome = await reconcile_pass(runtime)

    assert outcome.converged
    adopted = assistant_of_agent(sim, clinic.agent_ids[0])
    assert adopted["id"] == legacy["id"]
    assert adopted["metadata"]["org_id"] == str(clinic.org_id)
    assert adopted["metadata"]["crm"] == "keep-me"
    assert adopted["model"]["messages"][0]["content"].startswith("You are the inbound")
    assert len(writes(sim, "POST", "assistant")) == 1  # only the outbound agent's


async def test_an_assistant_tagged_for_another_org_is_never_written_and_blocks_the_org(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        victim, attacker = await seed_clinics(conn, 2)
    await reconcile_pass(runtime)
    victims_assistant = assistant_of_agent(sim, victim.agent_ids[0])
    snapshot = dict(victims_assistant)
    await update_agent(platform, attacker.agent_ids[0], vapi_assistant_id=victims_assistant["id"])
    await update_agent(platform, attacker.agent_ids[1], system_prompt="Leak me everywhere")
    before = len(sim.writes)

    outcome = await reconcile_pass(runtime)

    assert not outcome.converged
    assert len(sim.writes) == before
    assert sim.objects["assistant"][victims_assistant["id"]] == snapshot
    status = await status_of(runtime, attacker.org_id)
    assert status["state"] == "blocked"
    assert victims_assistant["id"] in status["message"]
    assert status["unreconciled_since"] is not None
    assert (await status_of(runtime, victim.org_id))["state"] == "synced"


async def test_an_untagged_assistant_named_by_two_orgs_is_adopted_by_neither(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        first, second = await seed_clinics(conn, 2)
    legacy = sim.create("assistant", LEGACY_BODY)
    await update_agent(platform, first.agent_ids[0], vapi_assistant_id=legacy["id"])
    await update_agent(platform, second.agent_ids[0], vapi_assistant_id=legacy["id"])

    await reconcile_pass(runtime)

    assert sim.objects["assistant"][legacy["id"]]["metadata"] == {"crm": "keep-me"}
    assert (await status_of(runtime, first.org_id))["state"] == "blocked"
    assert (await status_of(runtime, second.org_id))["state"] == "blocked"


async def test_two_agents_of_one_org_naming_one_assistant_block_the_org(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await reconcile_pass(runtime)
    shared = assistant_of_agent(sim, clinic.agent_ids[0])["id"]
    await update_agent(platform, clinic.agent_ids[1], vapi_assistant_id=shared)
    await update_agent(platform, clinic.agent_ids[0], system_prompt="changed")
    before = len(sim.writes)

    await reconcile_pass(runtime)

    assert len(sim.writes) == before
    assert (await status_of(runtime, clinic.org_id))["state"] == "blocked"


async def test_an_id_that_does_not_exist_in_vapi_gets_a_new_assistant(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await update_agent(platform, clinic.agent_ids[0], vapi_assistant_id=str(uuid.uuid4()))

    outcome = await reconcile_pass(runtime)

    assert outcome.converged
    created = assistant_of_agent(sim, clinic.agent_ids[0])
    assert (await agent_row(runtime, clinic.agent_ids[0]))["vapi_assistant_id"] == created["id"]


async def test_assistants_the_controller_does_not_own_are_never_touched(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    foreign = sim.create("assistant", {**LEGACY_BODY, "metadata": {"team": "sales"}})
    foreign_tool = sim.create(
        "tool",
        {
            "type": "function",
            "function": {"name": "endCall", "parameters": {"type": "object"}},
            "server": {"url": "https://someone-else.example/api/vapi/tools/endCall"},
        },
    )
    async with platform.begin() as conn:
        await seed_clinics(conn, 1)
    sim.writes.clear()

    await reconcile_pass(with_controller(runtime, prune=True))

    touched = {w.vapi_id for w in sim.writes}
    assert foreign["id"] not in touched
    assert foreign_tool["id"] not in touched
    assert foreign["id"] in sim.objects["assistant"]
    assert foreign_tool["id"] in sim.objects["tool"]


async def test_an_id_naming_an_assistant_another_system_tagged_for_this_org_blocks_it(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    """An org_id tag alone is not ownership: without ``managed_by`` it is someone else's."""
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    lookalike = sim.create(
        "assistant",
        {**LEGACY_BODY, "metadata": {"org_id": str(clinic.org_id), "managed_by": "crm-sync"}},
    )
    snapshot = dict(sim.objects["assistant"][lookalike["id"]])
    await update_agent(platform, clinic.agent_ids[0], vapi_assistant_id=lookalike["id"])
    sim.writes.clear()

    outcome = await reconcile_pass(runtime)

    assert not outcome.converged
    assert writes(sim, resource="assistant") == []
    assert sim.objects["assistant"][lookalike["id"]] == snapshot
    status = await status_of(runtime, clinic.org_id)
    assert (status["state"], status["reason"]) == ("blocked", "ownership_conflict")
    assert "not managed by vapi-reconciler" in status["message"]


async def test_tags_without_managed_by_are_never_adopted_by_tag_alone(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    tags = {"org_id": str(clinic.org_id), "agent_id": str(clinic.agent_ids[0])}
    lookalike = sim.create("assistant", {**LEGACY_BODY, "metadata": tags})
    snapshot = dict(sim.objects["assistant"][lookalike["id"]])
    sim.writes.clear()

    outcome = await reconcile_pass(with_controller(runtime, prune=True))

    assert outcome.converged
    assert sim.objects["assistant"][lookalike["id"]] == snapshot
    assert len(writes(sim, "POST", "assistant")) == 2
    linked = (await agent_row(runtime, clinic.agent_ids[0]))["vapi_assistant_id"]
    assert linked != lookalike["id"]


async def test_duplicated_ids_across_orgs_never_end_up_shared(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    """Two organizations naming one id that Vapi does not know each get their own assistant."""
    async with platform.begin() as conn:
        first, second = await seed_clinics(conn, 2)
    ghost = str(uuid.uuid4())
    await update_agent(platform, first.agent_ids[0], vapi_assistant_id=ghost)
    await update_agent(platform, second.agent_ids[0], vapi_assistant_id=ghost)

    outcome = await reconcile_pass(runtime)

    assert outcome.converged
    ids = {
        (await agent_row(runtime, agent))["vapi_assistant_id"]
        for agent in (first.agent_ids[0], second.agent_ids[0])
    }
    assert len(ids) == 2
    assert ghost not in ids
    assert assistant_of_agent(sim, first.agent_ids[0])["metadata"]["org_id"] == str(first.org_id)
    assert assistant_of_agent(sim, second.agent_ids[0])["metadata"]["org_id"] == str(second.org_id)
