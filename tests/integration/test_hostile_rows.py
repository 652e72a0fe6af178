"""Property: hostile agent rows stored in Postgres give a clear per-agent error in status,
never stop another organization and never crash a pass."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, event, given, settings
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.sample import seed_clinics
from desired_state.tables import agents, organizations
from tests.hostile_strategies import agent_rows, as_numeric
from tests.integration.helpers import status_of

KNOWN_REASONS = {"validation", "vapi_rejected"}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(row=agent_rows())
async def test_a_hostile_row_fails_only_its_own_org_with_a_clear_message(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, row: dict[str, object]
) -> None:
    async with platform.begin() as conn:
        (healthy,) = await seed_clinics(conn, 1)
        org_id, agent_id = uuid.uuid4(), uuid.uuid4()
        await conn.execute(insert(organizations).values(id=org_id, name="Hostile clinic"))
        values = {**row, "temperature": as_numeric(row["temperature"])}  # type: ignore[arg-type]
        await conn.execute(insert(agents).values(id=agent_id, org_id=org_id, **values))
    try:
        outcome = await reconcile_pass(runtime, org_ids=[healthy.org_id, org_id])

        assert (await status_of(runtime, healthy.org_id))["state"] == "synced"
        status = await status_of(runtime, org_id)
        event(f"{status['state']} {status['reason']}")
        if status["state"] != "synced":
            assert status["state"] == "failed", status
            assert status["reason"] in KNOWN_REASONS, status
            assert str(agent_id) in status["message"], status
            assert not outcome.converged
    finally:
        async with platform.begin() as conn:
            await conn.execute(delete(organizations))
        sim.objects["assistant"].clear()
