"""A clinic's number always reaches its inbound assistant (issue 16): bound on create,
relinked when the assistant is replaced, healed after a dashboard re-binding, never written
when contested or named by no desired inbound agent, released only under prune."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import plan_pass, reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.sample import SampleOrg, seed_clinics
from tests.integration.helpers import (
    assistant_of_agent,
    running,
    status_of,
    until,
    with_controller,
    writes,
)
from tests.integration.test_daemon_path import quick


async def clinics_with_numbers(
    platform: AsyncEngine, sim: SimulatorState, count: int
) -> tuple[list[SampleOrg], list[str]]:
    """``count`` clinics whose inbound agent names a number bought in the dashboard (and
    whose outbound agent names another one: caller id only)."""
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, count)
    numbers = []
    for n, clinic in enumerate(clinics):
        inbound = sim.seed_phone_number(provider="vapi", number=f"+1555100{n:04d}")["id"]
        outbound = sim.seed_phone_number(provider="twilio", number=f"+1555200{n:04d}")["id"]
        await name_number(platform, clinic.agent_ids[0], inbound)
        await name_number(platform, clinic.agent_ids[1], outbound)
        numbers.append(inbound)
    return clinics, numbers


async def name_number(platform: AsyncEngine, agent_id: UUID, number_id: str | None) -> None:
    async with platform.begin() as conn:
        await conn.execute(
            text("update agents set vapi_phone_number_id = :n where id = :a"),
            {"n": number_id, "a": agent_id},
        )


def routed(sim: SimulatorState, number_id: str) -> Any:
    return sim.objects["phone-number"][number_id].get("assistantId")


async def test_the_daemon_binds_relinks_and_heals_each_clinics_inbound_number(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    clinics, numbers = await clinics_with_numbers(platform, sim, 3)
    runtime = quick(runtime)
    inbound = [c.agent_ids[0] for c in clinics]

    async with running(runtime) as daemon:

        async def bound() -> bool:
            return all(
                routed(sim, n) is not None and routed(sim, n) == _assistant_id(sim, a)
                for n, a in zip(numbers, inbound, strict=True)
            )

        await until(bound, "every inbound number bound to its new assistant")
        outbound_numbers = [
            n["id"] for n in sim.objects["phone-number"].values() if n["provider"] == "twilio"
        ]
        assert all(routed(sim, n) is None for n in outbound_numbers), "caller id: never bound"

        replaced = _assistant_id(sim, inbound[0])
        sim.objects["assistant"].pop(replaced)  # deleted in the dashboard
        async with platform.begin() as conn:  # and the clinic edits its prompt
            await conn.execute(
                text("update agents set system_prompt = 'New.' where id = :a"), {"a": inbound[0]}
            )
        other = _assistant_id(sim, clinics[1].agent_ids[1])
        sim.edit_behind_the_back("phone-number", numbers[1], {"assistantId": other})
        await daemon.jobs.poll_vapi()

        async def healed() -> bool:
            fresh = _assistant_id(sim, inbound[0])
            return (
                fresh not in (None, replaced)
                and routed(sim, numbers[0]) == fresh
                and routed(sim, numbers[1]) == _assistant_id(sim, inbound[1])
            )

        await until(healed, "the replaced assistant's number relinked, the re-binding healed")

    binds = list(writes(sim, "PATCH", "phone-number"))
    assert {w.vapi_id for w in binds} == {numbers[0], numbers[1], numbers[2]}
    assert all(set(w.body) == {"assistantId"} for w in binds)


async def test_a_number_named_by_two_organizations_is_written_for_neither(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    clinics, numbers = await clinics_with_numbers(platform, sim, 3)
    await name_number(platform, clinics[1].agent_ids[0], numbers[0])

    await reconcile_pass(runtime)

    assert routed(sim, numbers[0]) is None
    for clinic in clinics[:2]:
        status = await status_of(runtime, clinic.org_id)
        assert status["state"] == "blocked"
        assert numbers[0] in status["message"]
    assert (await status_of(runtime, clinics[2].org_id))["state"] == "synced"
    assert routed(sim, numbers[2]) == _assistant_id(sim, clinics[2].agent_ids[0])


async def test_a_number_that_does_not_exist_fails_its_organization_only(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    clinics, _numbers = await clinics_with_numbers(platform, sim, 2)
    await name_number(platform, clinics[0].agent_ids[0], "0b7c1e1e-0000-4000-8000-000000000000")

    outcome = await reconcile_pass(runtime)

    status = await status_of(runtime, clinics[0].org_id)
    assert not outcome.converged
    assert status["state"] == "failed"
    assert "phone number 0b7c1e1e-0000-4000-8000-000000000000 does not exist" in status["message"]
    assert assistant_of_agent(sim, clinics[0].agent_ids[0]), "its assistant still converges"
    assert (await status_of(runtime, clinics[1].org_id))["state"] == "synced"


async def test_a_number_no_desired_inbound_agent_names_is_never_written(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    await clinics_with_numbers(platform, sim, 1)
    stranger = sim.create("assistant", {"name": "someone else's", "model": {}})["id"]
    theirs = sim.seed_phone_number(provider="vapi", number="+15559990000", assistant_id=stranger)
    sim.writes.clear()

    await reconcile_pass(with_controller(runtime, prune=True, max_prune_fraction=1.0))

    assert routed(sim, theirs["id"]) == stranger
    assert theirs["id"] not in {w.vapi_id for w in writes(sim, "PATCH", "phone-number")}


async def test_a_removed_inbound_agents_number_is_reported_then_released_under_prune(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    clinics, numbers = await clinics_with_numbers(platform, sim, 10)
    await reconcile_pass(runtime)
    orphan = _assistant_id(sim, clinics[0].agent_ids[0])
    async with platform.begin() as conn:
        await conn.execute(text("delete from agents where id = :a"), {"a": clinics[0].agent_ids[0]})

    await reconcile_pass(runtime)
    reported = await status_of(runtime, clinics[0].org_id)
    planned = await plan_pass(with_controller(runtime, prune=True))
    await reconcile_pass(with_controller(runtime, prune=True))

    assert f"phone number {numbers[0]} still routes to orphan {orphan}" in reported["message"]
    assert any(
        type(a).__name__ == "ReleasePhoneNumber" for a in planned.orgs[clinics[0].org_id].actions
    )
    assert routed(sim, numbers[0]) is None
    assert orphan not in sim.objects["assistant"]


def _assistant_id(sim: SimulatorState, agent_id: UUID) -> str | None:
    found = [
        a["id"]
        for a in sim.objects["assistant"].values()
        if isinstance(a.get("metadata"), dict) and a["metadata"].get("agent_id") == str(agent_id)
    ]
    return found[0] if len(found) == 1 else None
