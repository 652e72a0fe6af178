"""An organization's life on both platform schemas: adoption of what the platform's own sync
built, a suspended organization, hard-deleted and detached agents."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.sample import seed_clinics
from desired_state.unusable import AGENT_WITHOUT_ORG_ID, count_unusable_rows
from tests.integration.helpers import (
    assistant_of_agent,
    assistants_of,
    update_agent,
    with_controller,
    writes,
)


def pruning(runtime: Runtime) -> Runtime:
    """Prune on, the fraction bound off: these accounts are a clinic or two."""
    return with_controller(runtime, prune=True, max_prune_fraction=1.0)


async def platform_writes(platform: AsyncEngine, statement: str, **values: object) -> None:
    async with platform.begin() as conn:
        await conn.execute(text(statement), values)


@pytest.mark.both_schemas
async def test_an_account_the_platforms_sync_built_is_adopted_without_a_create(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    for agent_id in clinic.agent_ids:
        built = sim.create("assistant", {"name": "Built by the platform"})
        await update_agent(platform, agent_id, vapi_assistant_id=built["id"])
    legacy_ids = set(sim.objects["assistant"])
    sim.writes.clear()

    outcome = await reconcile_pass(runtime)

    assert outcome.converged
    assert not writes(sim, "POST", "assistant")
    assert {a["id"] for a in assistants_of(sim, clinic.org_id)} == legacy_ids


@pytest.mark.both_schemas
async def test_a_suspended_organization_loses_its_assistants_and_gets_them_back(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        suspended, other = await seed_clinics(conn, 2)
    await reconcile_pass(runtime)
    kept = {a["id"] for a in assistants_of(sim, other.org_id)}

    await platform_writes(
        platform, "update organizations set status = 'suspended' where id = :o", o=suspended.org_id
    )
    suspended_pass = await reconcile_pass(pruning(runtime))

    assert suspended_pass.converged
    assert assistants_of(sim, suspended.org_id) == []
    assert {a["id"] for a in assistants_of(sim, other.org_id)} == kept

    await platform_writes(
        platform, "update organizations set status = 'active' where id = :o", o=suspended.org_id
    )
    await reconcile_pass(runtime)

    assert len(assistants_of(sim, suspended.org_id)) == 2


@pytest.mark.both_schemas
async def test_a_hard_deleted_agents_assistant_is_pruned_and_its_sibling_kept(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await reconcile_pass(runtime)
    gone = assistant_of_agent(sim, clinic.agent_ids[1])["id"]
    sibling = assistant_of_agent(sim, clinic.agent_ids[0])["id"]

    await platform_writes(platform, "delete from agents where id = :a", a=clinic.agent_ids[1])
    outcome = await reconcile_pass(pruning(runtime))

    assert outcome.converged
    assert [w.vapi_id for w in writes(sim, "DELETE")] == [gone]
    assert sibling in sim.objects["assistant"]


@pytest.mark.parametrize("platform_schema", ["live"], indirect=True)
async def test_an_agent_detached_from_its_organization_is_a_counted_ghost_and_its_assistant_pruned(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await reconcile_pass(runtime)
    detached = assistant_of_agent(sim, clinic.agent_ids[1])["id"]

    await platform_writes(
        platform, "update agents set org_id = null where id = :a", a=clinic.agent_ids[1]
    )
    outcome = await reconcile_pass(pruning(runtime))

    assert outcome.converged
    assert [w.vapi_id for w in writes(sim, "DELETE")] == [detached]
    async with runtime.engine.connect() as conn:
        assert (await count_unusable_rows(conn))[AGENT_WITHOUT_ORG_ID] == 1
