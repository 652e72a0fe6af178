"""Is the controller's schema at the revision this code needs? Read-only.

Why: starting against an unmigrated or out-of-date database must be a one-line set-up error
("run migrate"), not a daemon logging "relation does not exist" forever.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection

from desired_state.migrate import head_revision
from desired_state.tables import SCHEMA


async def schema_problem(conn: AsyncConnection) -> str | None:
    """What is wrong with the controller's schema, with what to do; None when current."""
    head = head_revision()
    try:
        found = await conn.execute(text(f"select version_num from {SCHEMA}.alembic_version"))
        current = found.scalar_one_or_none()
    except ProgrammingError:
        await conn.rollback()
        current = None
    if current is None:
        return (
            f"the controller's schema is not installed in this database: run "
            f"`vapi-reconciler migrate` (revision {head})"
        )
    if current != head:
        return (
            f"the controller's schema is at revision {current}, this version needs {head}: "
            "run `vapi-reconciler migrate`"
        )
    return None
