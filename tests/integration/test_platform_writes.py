"""Installing the controller never blocks the platform for long: a controller session stopped
inside a transaction (SIGSTOP, a frozen VM) holds its row locks only until Postgres ends it
(``idle_in_transaction_session_timeout``, ``desired_state.engine``)."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.runtime import Runtime
from desired_state.engine import IDLE_IN_TRANSACTION_SECONDS
from desired_state.sample import seed_clinics


async def test_a_stopped_controller_transaction_blocks_a_platform_write_only_briefly(
    platform: AsyncEngine, runtime: Runtime
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
    agent = clinic.agent_ids[0]
    stopped = await runtime.engine.connect()
    await stopped.begin()
    await stopped.execute(
        text("update agents set vapi_assistant_id = 'held' where id = :a"), {"a": agent}
    )  # the controller's link, and then its process stops before the commit

    began = time.monotonic()
    async with platform.begin() as conn:
        await conn.execute(text("set local lock_timeout = '10s'"))
        await conn.execute(
            text("update agents set first_message = 'Hi' where id = :a"), {"a": agent}
        )
    waited = time.monotonic() - began
    await asyncio.gather(stopped.close(), return_exceptions=True)

    assert waited < IDLE_IN_TRANSACTION_SECONDS + 1.5, f"the platform waited {waited:.1f}s"
    async with platform.connect() as conn:
        row = (
            await conn.execute(
                text("select first_message, vapi_assistant_id from agents where id = :a"),
                {"a": agent},
            )
        ).one()
    assert row.first_message == "Hi"
    assert row.vapi_assistant_id != "held", "the stopped transaction was rolled back"
