"""The daemon's own path, in-process, on real Postgres and the simulator: claim, reconcile
through the step chain, complete fenced, record status, stop cleanly. And that it neither
dies nor wedges on what it did not expect."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core import plan as core_plan
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.sample import SampleOrg, seed_clinics
from desired_state.tables import org_status
from tests.integration.helpers import assistant_of_agent, running, until, with_controller


async def states(runtime: Runtime) -> dict[Any, tuple[str, str | None]]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(org_status.c.org_id, org_status.c.state, org_status.c.reason)
        )
    return {row.org_id: (row.state, row.reason) for row in rows}


async def seed(platform: AsyncEngine, count: int) -> list[SampleOrg]:
    async with platform.begin() as conn:
        return await seed_clinics(conn, count)


def quick(runtime: Runtime) -> Runtime:
    return with_controller(runtime, idle_poll_seconds=0.05, backoff_base_seconds=30)


async def test_the_daemon_claims_reconciles_completes_and_records_every_organization(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    clinics = await seed(platform, 3)
    runtime = quick(runtime)

    async with running(runtime) as daemon:

        async def all_synced() -> bool:
            found = await states(runtime)
            return all(found.get(c.org_id, ("",))[0] == "synced" for c in clinics)

        await until(all_synced, "every organization synced")
        assert daemon.health.liveness() == (True, "alive")
        assert daemon.health.readiness()[0]

    for clinic in clinics:
        for agent_id in clinic.agent_ids:
            assert assistant_of_agent(sim, agent_id)["metadata"]["agent_id"] == str(agent_id)
    async with platform.connect() as conn:
        held = await conn.execute(
            text("select count(*) from reconciler.work_items where lease_owner is not null")
        )
        replicas = await conn.execute(text("select count(*) from reconciler.replicas"))
    assert held.scalar_one() == 0, "a clean stop releases every claim"
    assert replicas.scalar_one() == 0, "a clean stop leaves the replica table"


async def test_assistants_of_unexpected_shapes_neither_kill_the_daemon_nor_stop_others(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    clinics = await seed(platform, 3)
    runtime = quick(runtime)
    async with running(runtime) as daemon:
        await until(lambda: _synced(runtime, [c.org_id for c in clinics]), "the first convergence")
        ours = assistant_of_agent(sim, clinics[0].agent_ids[0])["id"]
        unreadable = assistant_of_agent(sim, clinics[1].agent_ids[0])["id"]
        changed = assistant_of_agent(sim, clinics[2].agent_ids[0])["id"]
        stranger = sim.create("assistant", {"name": "dashboard script", "model": {}})["id"]
        sim.writes.clear()
        sim.edit_behind_the_back("assistant", ours, {"model": "gpt-4"})
        sim.edit_behind_the_back("assistant", stranger, {"model": "gpt-4"})
        sim.edit_behind_the_back("assistant", unreadable, {"metadata": ["not", "an", "object"]})
        await daemon.jobs.poll_vapi()

        async def healed_and_failed() -> bool:
            found = await states(runtime)
            return (
                isinstance(sim.objects["assistant"][ours]["model"], dict)
                and found.get(clinics[1].org_id, ("",))[0] == "failed"
            )

        await until(healed_and_failed, "ours healed, the unreadable one's organization failed")
        async with platform.begin() as conn:
            await conn.execute(
                text("update agents set system_prompt = 'Changed.' where id = :id"),
                {"id": clinics[2].agent_ids[0]},
            )

        async def other_org_updated() -> bool:
            body = sim.objects["assistant"][changed]
            return bool(body["model"]["messages"][0]["content"] == "Changed.")

        await until(other_org_updated, "another organization's change reached Vapi")
        assert daemon.health.liveness()[0]

    async with platform.connect() as conn:
        message = await conn.execute(
            select(org_status.c.message).where(org_status.c.org_id == clinics[1].org_id)
        )
    text_of = message.scalar_one()
    assert unreadable in text_of
    assert "metadata is a list" in text_of
    assert sim.objects["assistant"][stranger]["model"] == "gpt-4", "not ours: left alone"
    assert sim.objects["assistant"][unreadable]["metadata"] == ["not", "an", "object"]
    assert len(sim.objects["assistant"]) == 7, "nothing re-created"
    assert {w.vapi_id for w in sim.writes} == {
        ours,
        assistant_of_agent(sim, clinics[2].agent_ids[0])["id"],
    }


async def test_an_internal_error_in_one_organization_fails_it_alone_and_releases_its_claim(
    platform: AsyncEngine,
    runtime: Runtime,
    sim: SimulatorState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clinics = await seed(platform, 3)
    broken = clinics[1].org_id
    real_plan_org = core_plan.plan_org

    def buggy_plan_org(**kwargs: Any) -> Any:
        if kwargs["org_id"] == broken:
            raise KeyError("elevenlab")
        return real_plan_org(**kwargs)

    monkeypatch.setattr("controller.reconcile.chain.plan_org", buggy_plan_org)
    runtime = quick(runtime)

    async with running(runtime) as daemon:
        await until(
            lambda: _synced(runtime, [c.org_id for c in clinics if c.org_id != broken]),
            "the other organizations synced",
        )

        async def broken_failed() -> bool:
            return (await states(runtime)).get(broken) == ("failed", "internal_error")

        await until(broken_failed, "the broken organization recorded as an internal error")
        assert daemon.health.liveness()[0]
        assert daemon.metrics.internal_errors.labels("reconcile")._value.get() >= 1

    async with platform.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select lease_owner, due_at > now() as later, attempts, last_error "
                    "from reconciler.work_items where org_id = :org"
                ),
                {"org": broken},
            )
        ).one()
    assert row.lease_owner is None, "the claim is released"
    assert row.later, "retried with backoff, not at once"
    assert row.attempts >= 1
    assert "KeyError" in row.last_error


async def _synced(runtime: Runtime, org_ids: list[Any]) -> bool:
    found = await states(runtime)
    return all(found.get(org, ("",))[0] == "synced" for org in org_ids)
