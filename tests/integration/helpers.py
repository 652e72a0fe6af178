"""Small readers over the simulator's state and the platform tables, for assertions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import ControllerSettings
from controller.daemon.metrics import Metrics
from controller.daemon.supervisor import Daemon
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.tables import agents, org_status, org_tools


def writes(
    sim: SimulatorState, method: str | None = None, resource: str | None = None
) -> list[Any]:
    return [
        w
        for w in sim.writes
        if (method is None or w.method == method) and (resource is None or w.resource == resource)
    ]


def assistants_of(sim: SimulatorState, org_id: UUID) -> list[dict[str, Any]]:
    return [
        a
        for a in sim.objects["assistant"].values()
        if (a.get("metadata") or {}).get("org_id") == str(org_id)
    ]


def assistant_of_agent(sim: SimulatorState, agent_id: UUID) -> dict[str, Any]:
    found = [
        a
        for a in sim.objects["assistant"].values()
        if isinstance(a.get("metadata"), dict) and a["metadata"].get("agent_id") == str(agent_id)
    ]
    assert len(found) == 1, f"expected one assistant for agent {agent_id}, found {len(found)}"
    return found[0]


def with_controller(runtime: Runtime, **changes: Any) -> Runtime:
    current = runtime.settings.controller.model_dump()
    controller = ControllerSettings.model_validate({**current, **changes})
    settings = runtime.settings.model_copy(update={"controller": controller})
    return Runtime(runtime.engine, runtime.client, settings)


async def status_of(runtime: Runtime, org_id: UUID) -> dict[str, Any]:
    async with runtime.engine.connect() as conn:
        row = (
            (await conn.execute(select(org_status).where(org_status.c.org_id == org_id)))
            .mappings()
            .one()
        )
    return dict(row)


async def update_agent(platform: AsyncEngine, agent_id: UUID, **values: Any) -> None:
    """The platform edits an agent row (the controller's role may not)."""
    async with platform.begin() as conn:
        await conn.execute(update(agents).where(agents.c.id == agent_id).values(**values))


async def agent_row(runtime: Runtime, agent_id: UUID) -> dict[str, Any]:
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(select(agents).where(agents.c.id == agent_id))).mappings().one()
    return dict(row)


async def org_tool_rows(runtime: Runtime, org_id: UUID) -> dict[str, str]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(org_tools.c.tool_name, org_tools.c.vapi_tool_id).where(
                org_tools.c.org_id == org_id
            )
        )
    return {row.tool_name: row.vapi_tool_id for row in rows}


WAIT_SECONDS = 30.0


@asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[Daemon]:
    """The daemon, in-process, for the duration of the block (a clean stop after)."""
    daemon = Daemon(runtime, config_path=None, metrics=Metrics(), replica_id="in-process")
    task = asyncio.create_task(daemon.run())
    try:
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, WAIT_SECONDS)


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Wait for a condition the daemon's tasks bring about (never a fixed sleep)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = check()
        if found if isinstance(found, bool) else await found:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
