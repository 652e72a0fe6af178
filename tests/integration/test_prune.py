"""Deletion is guarded: prune only when enabled, never past the bound."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import plan_pass, reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.sample import seed_clinics
from desired_state.tables import agents
from tests.integration.helpers import assistant_of_agent, status_of, with_controller, writes


async def test_a_deleted_agents_assistant_is_reported_as_an_orphan_and_left_alone(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await reconcile_pass(runtime)
    orphan = assistant_of_agent(sim, clinic.agent_ids[1])["id"]
    async with platform.begin() as conn:
        await conn.execute(delete(agents).where(agents.c.id == clinic.agent_ids[1]))

    outcome = await reconcile_pass(runtime)

    assert outcome.converged
    assert orphan in sim.objects["assistant"]
    assert not writes(sim, "DELETE")
    assert (await plan_pass(runtime)).orgs[clinic.org_id].orphans == (orphan,)
    assert "orphaned" in (await status_of(runtime, clinic.org_id))["message"]


async def test_with_prune_on_a_deleted_agents_assistant_is_deleted(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 10)
    await reconcile_pass(runtime)
    orphan = assistant_of_agent(sim, clinics[0].agent_ids[1])["id"]
    async with platform.begin() as conn:
        await conn.execute(delete(agents).where(agents.c.id == clinics[0].agent_ids[1]))

    outcome = await reconcile_pass(with_controller(runtime, prune=True))

    assert outcome.converged
    assert orphan not in sim.objects["assistant"]
    assert [w.vapi_id for w in writes(sim, "DELETE")] == [orphan]
    assert len(sim.objects["assistant"]) == 19


async def test_an_empty_desired_state_never_deletes_past_the_bound(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 6)
    await reconcile_pass(runtime)
    async with platform.begin() as conn:
        await conn.execute(delete(agents))

    outcome = await reconcile_pass(
        with_controller(runtime, prune=True, max_prune_per_pass=5, max_prune_fraction=0.5)
    )

    assert not writes(sim, "DELETE")
    assert len(sim.objects["assistant"]) == 12
    assert "prune guard" in outcome.prune_blocked
    assert (await status_of(runtime, clinics[0].org_id))["state"] == "blocked"


async def test_prune_within_the_bound_deletes_exactly_the_orphans(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 10)
    await reconcile_pass(runtime)
    gone = [assistant_of_agent(sim, c.agent_ids[0])["id"] for c in clinics[:2]]
    async with platform.begin() as conn:
        await conn.execute(
            delete(agents).where(agents.c.id.in_([c.agent_ids[0] for c in clinics[:2]]))
        )

    await reconcile_pass(with_controller(runtime, prune=True, max_prune_per_pass=2))

    assert sorted(w.vapi_id for w in writes(sim, "DELETE")) == sorted(gone)
