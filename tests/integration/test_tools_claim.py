"""The account's tools row is worked alone and first by the claim loop, and held like any
other claim meanwhile: the heartbeat renews the leases of what ``inflight`` holds, and a
tools visit slowed by Vapi must not lose its lease to another replica."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core.keys import TOOLS, WorkKey
from controller.daemon.claims import Held, Snapshot
from controller.daemon.metrics import Metrics
from controller.daemon.supervisor import Daemon
from controller.reconcile.runtime import Runtime
from desired_state import queue
from desired_state.queue import Claim
from desired_state.sample import seed_clinics


async def test_the_tools_row_is_held_in_flight_while_it_is_worked(
    platform: AsyncEngine, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 1)
    async with runtime.engine.begin() as conn:
        await queue.ensure_rows(conn)
    loop = Daemon(runtime, config_path=None, metrics=Metrics(), replica_id="t").claims
    held_during: list[set[WorkKey]] = []

    async def reconcile(claimed: Claim, _snapshot: Snapshot, _id: str, _slot: Held) -> str:
        held_during.append(set(loop.inflight))
        return "synced"

    monkeypatch.setattr(loop, "_reconcile", reconcile)
    await loop._claim(4)

    assert held_during == [{TOOLS}]
    assert loop.inflight == {}
    assert TOOLS not in loop.leases
