"""The platform's shape is read once for the callers that ask at once (a command's start asks
three times together), and a caller never goes without it because another's read failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from desired_state.engine import async_engine
from desired_state.shape import shape_of


def reads_the_catalog(statement: str) -> bool:
    """The shape's four statements: each reads the catalog (pg_roles, pg_class, pg_policy)."""
    return "from pg_" in statement


@pytest.fixture
async def engine(controller_url: str) -> AsyncIterator[AsyncEngine]:
    engine = async_engine(controller_url, pool_size=3)
    yield engine
    await engine.dispose()


async def test_three_callers_asking_at_once_share_one_read(engine: AsyncEngine) -> None:
    statements: list[str] = []
    event.listen(
        engine.sync_engine,
        "before_cursor_execute",
        lambda _conn, _cursor, statement, *_: statements.append(statement),
    )
    async with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        shapes = await asyncio.gather(shape_of(a), shape_of(b), shape_of(c))

    assert shapes[0].ok
    assert shapes[0] == shapes[1] == shapes[2]
    assert sum(reads_the_catalog(s) for s in statements) == 4  # one read: four statements


async def test_a_caller_that_waited_for_a_read_that_failed_reads_for_itself(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as first, engine.connect() as second:
        failing = first.sync_connection
        seen: list[str] = []

        def fail_the_first_read(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if conn is failing and reads_the_catalog(statement):
                seen.append(statement)
                if len(seen) == 2:  # the second caller is waiting by now
                    raise RuntimeError("the first read failed")

        event.listen(engine.sync_engine, "before_cursor_execute", fail_the_first_read)
        reading = asyncio.ensure_future(shape_of(first))
        waiting = asyncio.ensure_future(shape_of(second))
        with pytest.raises(RuntimeError, match="the first read failed"):
            await reading
        shape = await waiting

    assert shape.ok
