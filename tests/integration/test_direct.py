"""The hot path's direct connections (``desired_state.direct``): kept and lent again, and a
connection the server dropped is given up so the caller's retry gets a fresh one."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.runtime import Runtime
from desired_state.direct import DirectConnections, direct


async def backend_pid(connections: DirectConnections) -> int:
    async with connections.connection() as conn:
        row = await (await conn.execute("select pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_connection_is_lent_again_until_the_server_drops_it(
    runtime: Runtime, platform: AsyncEngine
) -> None:
    connections = direct(runtime.engine)
    first = await backend_pid(connections)
    assert await backend_pid(connections) == first  # kept, not made again

    async with platform.connect() as admin:
        # waits until the backend is gone (up to 5 s): no race with the next statement
        await admin.execute(text("select pg_terminate_backend(:pid, 5000)"), {"pid": first})
    with pytest.raises(psycopg.OperationalError):
        await backend_pid(connections)  # the failure the caller's retry waits out

    assert await backend_pid(connections) not in (first, None)


async def test_dispose_closes_the_direct_connections(
    runtime: Runtime, platform: AsyncEngine
) -> None:
    connections = direct(runtime.engine)
    pid = await backend_pid(connections)

    await connections.close()

    async with platform.connect() as admin:
        alive = await admin.scalar(
            text("select count(*) from pg_stat_activity where pid = :pid"), {"pid": pid}
        )
    assert alive == 0
