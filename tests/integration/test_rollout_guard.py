"""The mass-update guard (issue 18): a configuration change that would rewrite more than
``max_update_percent`` of the managed assistants within an hour sends a canary and holds the
rest until the operator confirms; the platform's own row changes are never held."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core.actions import UpdateAssistant
from controller.reconcile.full_pass import plan_pass, reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.sample import seed_clinics
from tests.integration.helpers import status_of, update_agent, with_controller, writes


def moved_backend(runtime: Runtime, **controller: Any) -> Runtime:
    runtime = with_controller(runtime, **controller)
    settings = runtime.settings.model_copy(update={"backend_url": "https://backend2.test"})
    return Runtime(runtime.engine, runtime.client, settings)


async def test_a_backend_url_change_sends_a_canary_holds_the_rest_and_goes_on_when_confirmed(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 10)
    await reconcile_pass(runtime)
    sim.writes.clear()
    guarded = moved_backend(runtime, max_update_percent=20, canary_percent=10)

    first = await reconcile_pass(guarded)
    canary = writes(sim, "PATCH", "assistant")
    planned = await plan_pass(guarded)
    held = [a for org in planned.orgs.values() for a in org.held]
    statuses = [await status_of(runtime, c.org_id) for c in clinics]
    digest = guarded.settings.render_digest
    sim.writes.clear()
    confirmed = moved_backend(
        runtime, max_update_percent=20, canary_percent=10, confirm_rollout=digest
    )
    last = await reconcile_pass(confirmed)

    assert not first.converged
    assert len(canary) == 2, "a canary of 10% of 20 managed assistants"
    assert all(set(w.body) == {"server"} for w in canary)
    assert len(held) == 18
    assert all(isinstance(a, UpdateAssistant) and a.cause == "config" for a in held)
    blocked = [s for s in statuses if s["state"] == "blocked"]
    assert len(blocked) == 9, "the canary's organization is synced, the nine others held"
    assert all(s["reason"] == "mass_update_guard" for s in blocked)
    assert all(f'confirm_rollout = "{digest}"' in s["message"] for s in blocked)
    assert last.converged
    assert len(writes(sim, "PATCH", "assistant")) == 18


async def test_the_platforms_row_changes_are_never_held(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, 10)
    await reconcile_pass(runtime)
    for clinic in clinics:
        for agent_id in clinic.agent_ids:
            await update_agent(platform, agent_id, system_prompt="Everyone changed it.")
    sim.writes.clear()

    outcome = await reconcile_pass(with_controller(runtime, max_update_percent=5))

    assert outcome.converged
    assert len(writes(sim, "PATCH", "assistant")) == 20
