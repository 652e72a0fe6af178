"""Claiming and completing work rows as the daemon does, one transaction each, for the
queue's tests (``test_queue``, ``test_lanes``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from desired_state import queue
from desired_state.direct import direct
from desired_state.queue import Claim, Completion


async def claim(
    engine: AsyncEngine, owner: str, *, limit: int = 100, lease: float = 30, tools: bool = False
) -> list[Claim]:
    async with engine.begin() as conn:
        return await queue.claim(conn, owner=owner, limit=limit, lease_seconds=lease, tools=tools)


async def complete(engine: AsyncEngine, claimed: Claim, due_in: float | None = 300) -> bool:
    async with direct(engine).connection() as conn:
        kept = await queue.complete(conn, [Completion(claimed, due_in, 0, None)])
    return claimed.key in kept


async def settle_tools(engine: AsyncEngine) -> None:
    """Every organization's row exists and the tools gate is open (their row completed)."""
    async with engine.begin() as conn:
        await queue.ensure_rows(conn)
    for claimed in await claim(engine, "setup", tools=True):
        assert await complete(engine, claimed)
