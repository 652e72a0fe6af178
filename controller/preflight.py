"""Checks a command runs before it acts, so it never starts wrong.

A set-up error (an unmigrated or out-of-date schema) stops ``reconcile`` and ``plan`` with one
line saying what to do. ``run`` runs the same check once Postgres answers: an outage is not a
set-up error, so a daemon that cannot reach Postgres waits instead of exiting.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from desired_state.revision import schema_problem


class SetupError(Exception):
    """The database is not ready for this controller; the message says what to do."""


class ListenError(SetupError):
    """The health server's address cannot be bound (in use, not local, not permitted)."""


async def check_schema(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        problem = await schema_problem(conn)
    if problem:
        raise SetupError(problem)
