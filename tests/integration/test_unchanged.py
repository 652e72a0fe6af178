"""A resync of an organization nothing changed for is answered from its last visit's verdict
(``controller.reconcile.quiet``): no confirm, no plan, no task, one group commit for the
batch, and its status still says when it was last found in sync. Any change to what its plan
is made from (its rows, Vapi's copy, the settings) sends it through every step again."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core.desired import DesiredState
from controller.daemon.supervisor import Daemon
from controller.reconcile.chain import Chain
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state import queue
from desired_state.queue import Lane
from desired_state.sample import SampleOrg, seed_clinics
from desired_state.tables import org_status
from tests.integration.helpers import (
    assistant_of_agent,
    running,
    until,
    update_agent,
    with_controller,
)

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
both_schemas = pytest.mark.parametrize("platform_schema", ["contract", "live"], indirect=True)


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list[UUID]:
    """The organizations planned through the chain's steps, in order."""
    seen: list[UUID] = []
    prepare = Chain._prepare

    async def counted(chain: Chain, org_id: UUID, desired: DesiredState) -> object:
        seen.append(org_id)
        return await prepare(chain, org_id, desired)

    monkeypatch.setattr(Chain, "_prepare", counted)
    return seen


async def synced_since(runtime: Runtime, org_ids: list[UUID], since: dt.datetime) -> bool:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(org_status.c.org_id, org_status.c.state, org_status.c.last_synced_at)
        )
    found = {r.org_id: r for r in rows}
    return all(
        o in found and found[o].state == "synced" and found[o].last_synced_at > since
        for o in org_ids
    )


async def settled(runtime: Runtime) -> bool:
    """Nothing claimed and nothing due before its periodic resync (follow-ups done)."""
    async with runtime.engine.connect() as conn:
        busy = await conn.execute(
            text(
                "select count(*) from reconciler.work_items where lease_owner is not null "
                "or due_at < now() + interval '60 seconds'"
            )
        )
    return busy.scalar_one() == 0


def remembered(daemon: Daemon, org_ids: list[UUID]) -> bool:
    """A visit that needed nothing was made to each (its verdict is kept)."""
    return all(o in daemon.claims.chain.quiet for o in org_ids)


async def converged_and_visited(runtime: Runtime, daemon: Daemon, org_ids: list[UUID]) -> None:
    """Created, then visited once more by a resync that found nothing to do (a visit that
    wrote leaves no verdict: what it wrote is observed anew)."""
    await until(lambda: synced_since(runtime, org_ids, EPOCH), "the first convergence")
    await until(lambda: settled(runtime), "the queue to settle")
    await resync_all(runtime)
    await until(lambda: remembered(daemon, org_ids), "a visit that needed nothing")
    await until(lambda: settled(runtime), "the queue to settle again")


async def resync_all(runtime: Runtime) -> dt.datetime:
    """Every organization falls due, as a periodic resync sweep makes them; returns when."""
    async with runtime.engine.begin() as conn:
        now = (await conn.execute(text("select now()"))).scalar_one()
        await queue.mark_due(conn, None, lane=Lane.BULK)
    return now


async def resynced(runtime: Runtime, org_ids: list[UUID], what: str) -> None:
    since = await resync_all(runtime)
    await until(lambda: synced_since(runtime, org_ids, since), what)


@pytest.fixture
def quick(runtime: Runtime) -> Runtime:
    return with_controller(runtime, idle_poll_seconds=0.05)


@pytest.fixture
async def visited(platform: AsyncEngine, quick: Runtime) -> AsyncIterator[Visited]:
    """Three clinics and the daemon that created their assistants, then visited each once more
    without finding anything to do."""
    async with platform.begin() as conn:
        clinics: list[SampleOrg] = await seed_clinics(conn, 3)
    orgs = [c.org_id for c in clinics]
    async with running(quick) as daemon:
        await converged_and_visited(quick, daemon, orgs)
        yield Visited(daemon, clinics, orgs)


@dataclass(frozen=True)
class Visited:
    daemon: Daemon
    clinics: list[SampleOrg]
    orgs: list[UUID]


@both_schemas
async def test_a_resync_of_unchanged_organizations_skips_every_step_and_still_records_them(
    platform: AsyncEngine,
    quick: Runtime,
    sim: SimulatorState,
    planned: list[UUID],
    visited: Visited,
) -> None:
    clinics, orgs = visited.clinics, visited.orgs
    sim.writes.clear()
    planned.clear()

    await resynced(quick, orgs, "a resync of every organization")
    assert planned == [], "unchanged organizations are not planned again"
    assert sim.writes == []

    edited = clinics[0].agent_ids[0]
    await update_agent(platform, edited, system_prompt="A new prompt, edited by the clinic.")
    await until(
        lambda: _prompt(sim, edited) == "A new prompt, edited by the clinic.",
        "the edit reaching Vapi",
    )
    await until(lambda: settled(quick), "the queue to settle after the edit")
    assert set(planned) == {clinics[0].org_id}, "only the edited organization was planned"

    planned.clear()
    await resynced(quick, orgs, "a resync after the edit")
    assert planned == [clinics[0].org_id], "a visit that wrote leaves no verdict"
    assert sim.writes[1:] == [], "only the edit was written"

    await until(lambda: settled(quick), "the queue to settle")
    planned.clear()
    await resynced(quick, orgs, "one more resync")
    assert planned == [], "the edited organization's new verdict is kept too"


@both_schemas
async def test_drift_in_vapi_and_a_settings_change_send_organizations_through_every_step(
    quick: Runtime, sim: SimulatorState, planned: list[UUID], visited: Visited
) -> None:
    clinics, orgs, daemon = visited.clinics, visited.orgs, visited.daemon
    drifted = assistant_of_agent(sim, clinics[1].agent_ids[0])["id"]
    sim.edit_behind_the_back("assistant", drifted, {"firstMessage": "Edited in the dashboard"})
    await daemon.cache.confirm_exists("assistant", [drifted])  # as the next poll would
    planned.clear()
    sim.writes.clear()

    await resynced(quick, orgs, "a resync after the drift")
    await until(lambda: settled(quick), "the queue to settle after the repair")
    assert set(planned) == {clinics[1].org_id}, "only the drifted organization was planned"
    assert [w.vapi_id for w in sim.writes] == [drifted], "the drift was repaired"

    planned.clear()
    daemon.runtime.settings = with_controller(quick, resync_jitter=0.05).settings
    await resynced(quick, orgs, "a resync after a reload")
    assert sorted(planned) == sorted(orgs), "new settings: every organization is planned"


def _prompt(sim: SimulatorState, agent_id: UUID) -> object:
    try:
        body = assistant_of_agent(sim, agent_id)
    except AssertionError:
        return None
    return body["model"]["messages"][0]["content"]
