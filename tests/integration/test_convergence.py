"""Cold start, no false drift, desired changes and drift made outside the controller."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import plan_pass, reconcile_pass
from controller.reconcile.observe import ObservedCache
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.sample import seed_clinics
from desired_state.tables import tool_definitions
from tests.integration.helpers import (
    agent_row,
    assistant_of_agent,
    assistants_of,
    org_tool_rows,
    status_of,
    update_agent,
    writes,
)

TOOL_NAMES = {
    "checkAvailability",
    "bookClinicAppointment",
    "transferCall",
    "lookupCaller",
    "endCall",
    "queryKnowledgeBase",
}


@pytest.mark.both_schemas
async def test_cold_start_converges_every_org_with_one_tool_per_definition(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 5)

    outcome = await reconcile_pass(runtime)

    assert outcome.converged
    assert {o.state for o in outcome.orgs} == {"synced"}
    tools = list(sim.objects["tool"].values())
    assert sorted(t["function"]["name"] for t in tools) == sorted(TOOL_NAMES)
    tool_ids = sorted(t["id"] for t in tools)
    for clinic in clinics:
        assert len(assistants_of(sim, clinic.org_id)) == 2
        for agent_id in clinic.agent_ids:
            assistant = assistant_of_agent(sim, agent_id)
            assert assistant["metadata"]["managed_by"] == "vapi-reconciler"
            assert assistant["metadata"]["org_id"] == str(clinic.org_id)
            assert sorted(assistant["model"]["toolIds"]) == tool_ids
            assert (await agent_row(runtime, agent_id))["vapi_assistant_id"] == assistant["id"]
        assert set(await org_tool_rows(runtime, clinic.org_id)) == TOOL_NAMES
        status = await status_of(runtime, clinic.org_id)
        assert status["state"] == "synced"
        assert status["unreconciled_since"] is None
        assert status["last_synced_at"] is not None
    assert len(writes(sim, "POST")) == 6 + 10
    assert len(sim.writes) == 16


@pytest.mark.both_schemas
async def test_a_second_pass_right_after_convergence_writes_nothing(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 3)
    # Vapi stores some values differently from how they were sent (trailing whitespace).
    await update_agent(platform, clinics[0].agent_ids[0], first_message="Hello there!   ")
    await update_agent(platform, clinics[1].agent_ids[0], temperature=None, max_tokens=None)
    await reconcile_pass(runtime)
    before = len(sim.writes)

    second = await reconcile_pass(runtime)

    assert second.converged
    assert len(sim.writes) == before
    assert not (await plan_pass(runtime)).has_changes


@pytest.mark.both_schemas
async def test_an_edited_prompt_is_one_patch_with_the_full_model(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 2))[0]
    await reconcile_pass(runtime)
    agent_id = clinic.agent_ids[0]
    links = sorted(assistant_of_agent(sim, agent_id)["model"]["toolIds"])
    before = len(sim.writes)

    await update_agent(platform, agent_id, system_prompt="You are a new receptionist.")
    await reconcile_pass(runtime)

    new = sim.writes[before:]
    assert [(w.method, w.vapi_id) for w in new] == [
        ("PATCH", assistant_of_agent(sim, agent_id)["id"])
    ]
    assert set(new[0].body) == {"model"}
    model = new[0].body["model"]
    assert {"provider", "model", "messages", "toolIds"} <= set(model)
    assert model["messages"] == [{"role": "system", "content": "You are a new receptionist."}]
    stored = assistant_of_agent(sim, agent_id)["model"]
    assert sorted(stored["toolIds"]) == links
    assert stored["provider"] == "openai"


@pytest.mark.both_schemas
async def test_drift_made_behind_the_controllers_back_is_planned_then_corrected(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await reconcile_pass(runtime)
    first, second = (assistant_of_agent(sim, a) for a in clinic.agent_ids)
    original_model = first["model"]
    original_voice = second["voice"]
    sim.edit_behind_the_back(
        "assistant",
        first["id"],
        {
            "model": {
                **first["model"],
                "messages": [{"role": "system", "content": "Hacked"}],
                "toolIds": first["model"]["toolIds"][:2],
            }
        },
    )
    sim.edit_behind_the_back(
        "assistant", second["id"], {"voice": {"provider": "vapi", "voiceId": "Rohan"}}
    )
    before = len(sim.writes)

    plan = await plan_pass(runtime)

    assert plan.has_changes
    updates = plan.orgs[clinic.org_id].actions
    assert {(a.vapi_id, a.cause) for a in updates} == {  # type: ignore[union-attr]
        (first["id"], "drift"),
        (second["id"], "drift"),
    }
    assert len(sim.writes) == before

    await reconcile_pass(runtime)

    assert len(sim.writes) == before + 2
    healed = assistant_of_agent(sim, clinic.agent_ids[0])["model"]
    assert healed["messages"] == original_model["messages"]
    assert sorted(healed["toolIds"]) == sorted(original_model["toolIds"])
    assert (
        assistant_of_agent(sim, clinic.agent_ids[1])["voice"]["voiceId"]
        == original_voice["voiceId"]
    )


@pytest.mark.both_schemas
async def test_a_tool_definition_change_patches_the_tool_in_place_and_keeps_every_link(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 3)
    await reconcile_pass(runtime)
    tool_ids_before = set(sim.objects["tool"])
    before = len(sim.writes)

    async with runtime.engine.begin() as conn:
        await conn.execute(
            update(tool_definitions)
            .where(tool_definitions.c.name == "endCall")
            .values(description="End the call politely once the caller is done.")
        )
    await reconcile_pass(runtime)

    new = sim.writes[before:]
    assert [(w.method, w.resource) for w in new] == [("PATCH", "tool")]
    assert "type" not in new[0].body
    assert set(sim.objects["tool"]) == tool_ids_before
    end_call = sim.objects["tool"][new[0].vapi_id]
    assert end_call["function"]["description"].startswith("End the call politely")
    for clinic in clinics:
        for agent_id in clinic.agent_ids:
            assert set(assistant_of_agent(sim, agent_id)["model"]["toolIds"]) == tool_ids_before


async def test_the_cache_sees_drift_after_a_cold_start_from_an_empty_account(
    runtime: Runtime, sim: SimulatorState
) -> None:
    cache = ObservedCache(runtime.client)
    await cache.relist()
    created = sim.create("assistant", {"name": "Made elsewhere"})

    touched = await cache.poll()

    assert cache.state.assistant(created["id"]) is not None
    assert touched == set()
    sim.edit_behind_the_back(
        "assistant",
        created["id"],
        {
            "metadata": {
                "managed_by": "vapi-reconciler",
                "org_id": "7d4b8f8e-2a47-4d7b-9a57-1f0f1c2b3c4d",
            }
        },
    )
    assert {str(org) for org in await cache.poll()} == {"7d4b8f8e-2a47-4d7b-9a57-1f0f1c2b3c4d"}


async def cache_in_one_millisecond(runtime: Runtime, sim: SimulatorState) -> ObservedCache:
    """A listed cache over an empty account whose clock stands still from now on: every
    ``updatedAt`` the simulator stamps is the same millisecond."""
    cache = ObservedCache(runtime.client)
    await cache.relist()
    frozen = sim.clock()
    sim.clock = lambda: frozen
    return cache


async def test_an_edit_in_the_same_millisecond_as_the_cached_version_is_still_seen(
    runtime: Runtime, sim: SimulatorState
) -> None:
    cache = await cache_in_one_millisecond(runtime, sim)
    created = sim.create("assistant", {"name": "Made elsewhere"})
    await cache.poll()
    org = "7d4b8f8e-2a47-4d7b-9a57-1f0f1c2b3c4d"

    sim.edit_behind_the_back(
        "assistant", created["id"], {"metadata": {"managed_by": "vapi-reconciler", "org_id": org}}
    )

    assert {str(touched) for touched in await cache.poll()} == {org}
    assert await cache.poll() == set()  # the same version listed again is not a change


async def test_a_listing_of_the_version_a_write_of_ours_returned_is_not_a_change(
    runtime: Runtime, sim: SimulatorState
) -> None:
    cache = await cache_in_one_millisecond(runtime, sim)
    org = "7d4b8f8e-2a47-4d7b-9a57-1f0f1c2b3c4d"
    written = sim.create(
        "assistant", {"name": "Ours", "metadata": {"managed_by": "vapi-reconciler", "org_id": org}}
    )
    assert written["firstMessage"] is None  # a single answer spells absent fields as null
    cache.record_write("assistant", written)

    assert await cache.poll() == set()
    assert await cache.relist() == set()


async def test_a_poll_answer_older_than_a_write_of_ours_does_not_roll_the_cache_back(
    runtime: Runtime, sim: SimulatorState
) -> None:
    cache = ObservedCache(runtime.client)
    await cache.relist()
    created = sim.create("assistant", {"name": "x"})
    stale = dict(created)
    fresher = {**created, "name": "Written by us", "updatedAt": "2999-01-01T00:00:00.000Z"}
    cache.record_write("assistant", fresher)

    touched = cache._absorb("assistant", [stale])

    assert touched == set()
    assert cache.state.assistant(created["id"]).body["name"] == "Written by us"  # type: ignore[union-attr]


async def test_a_pass_reports_its_progress_organization_by_organization(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 4)
    seen: list[tuple[int, int]] = []

    await reconcile_pass(runtime, on_progress=lambda done, total: seen.append((done, total)))

    assert seen == [(n, 4) for n in range(5)]
