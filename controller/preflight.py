"""Checks a command runs before it acts, so it never starts wrong.

A set-up error stops ``run``, ``reconcile`` and ``plan`` at start: the controller's schema
is not at this version's revision (one line: run ``migrate``), or the platform's tables do
not let the controller's role see the whole desired state (CONTRACT section 1: a missing
column, a privilege, a row-level security policy hiding rows): one line saying what is
wrong, then the SQL that fixes each problem. ``run`` makes the same check once Postgres
answers: an outage is not a set-up error, so a daemon that cannot reach Postgres waits
instead of exiting, and one whose set-up is wrong stays not ready until it is fixed.

Must not change anything in the database and must not decide what a command does about a
problem: it only finds and words it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from desired_state.revision import schema_problem
from desired_state.shape import PlatformShape, shape_of


class SetupError(Exception):
    """The database is not ready for this controller; the message says what to do."""


class ListenError(SetupError):
    """The health server's address cannot be bound (in use, not local, not permitted)."""


class HiddenStateError(SetupError):
    """The platform's tables hide part of the desired state from the controller's role."""

    def __init__(self, shape: PlatformShape) -> None:
        super().__init__(shape_message(shape))
        self.shape = shape


def shape_summary(shape: PlatformShape) -> str:
    """One line: whose view is partial, how many problems, in which tables."""
    tables = ", ".join(dict.fromkeys(p.table for p in shape.problems))
    count = len(shape.problems)
    return (
        f"role {shape.role} cannot see the whole desired state "
        f"({count} problem{'s' if count != 1 else ''} in {tables}); refusing to act"
    )


def shape_fixes(shape: PlatformShape) -> list[str]:
    """The statements that fix the problems, each with what it fixes as a SQL comment, so
    the lines can be pasted into psql as they are (run as the tables' owner)."""
    return list(dict.fromkeys(f"{p.fix_sql}  -- {p.what}" for p in shape.problems))


def shape_message(shape: PlatformShape) -> str:
    fixes = "\n".join(f"  {line}" for line in shape_fixes(shape))
    return f"{shape_summary(shape)}. Fix, as the tables' owner:\n{fixes}"


async def setup_problem(conn: AsyncConnection) -> SetupError | None:
    """What keeps this controller from acting on this database; None when nothing does."""
    schema = await schema_problem(conn)
    if schema:
        return SetupError(schema)
    shape = await shape_of(conn)
    return None if shape.ok else HiddenStateError(shape)


async def check_setup(engine: AsyncEngine) -> None:
    """``SetupError`` when the set-up is wrong (see ``setup_problem``)."""
    async with engine.connect() as conn:
        problem = await setup_problem(conn)
    if problem is not None:
        raise problem
