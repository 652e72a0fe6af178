"""Is the controller's schema at the revision this code needs? Read-only.

Why: starting against an unmigrated or out-of-date database must be a one-line set-up error
("run migrate"), not a daemon logging "relation does not exist" forever. Must not import
alembic (``desired_state.migrate`` does): ``run``, ``reconcile`` and ``plan`` make this check
at start, and alembic (with mako and pygments) would be the largest import they make.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection

from desired_state.tables import SCHEMA

HEAD_REVISION = "0010"
"""The newest revision of ``desired_state/migrations`` (a unit test holds it to alembic's
answer, so a new migration must move it)."""
RECORD_WRITE = (
    "reconciler.record_write(text, text, uuid, text, text, text, text, text, uuid, uuid, "
    "bigint, jsonb)"
)
"""The function every Vapi write is recorded by (migration 0010): the role must execute it."""


async def schema_problem(conn: AsyncConnection) -> str | None:
    """What is wrong with the controller's schema, with what to do; None when current."""
    try:
        found = await conn.execute(text(f"select version_num from {SCHEMA}.alembic_version"))
        current = found.scalar_one_or_none()
    except ProgrammingError:
        await conn.rollback()
        current = None
    if current is None:
        return (
            f"the controller's schema is not installed in this database: run "
            f"`vapi-reconciler migrate` (revision {HEAD_REVISION})"
        )
    if current != HEAD_REVISION:
        return (
            f"the controller's schema is at revision {current}, this version needs "
            f"{HEAD_REVISION}: run `vapi-reconciler migrate`"
        )
    allowed = await conn.scalar(
        text("select has_function_privilege(:function, 'execute')"), {"function": RECORD_WRITE}
    )
    if not allowed:
        return (
            f"this role may not execute {SCHEMA}.record_write, which records every Vapi "
            "write: run deploy/postgres/controller-role.sql again after `migrate`"
        )
    return None
