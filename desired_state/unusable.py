"""Platform rows the controller cannot use: skipped by the loader, counted for ``status``.

Exists because the live platform's ``agents.org_id`` is nullable and has no foreign key:
agents without an organization, or of one that does not exist, are ghosts no assistant can
be rendered for (CONTRACT section 1: a row it cannot use is reported and skipped). The one
predicate here decides both what the loader reads and what is counted, so the two never
disagree.

Must not write and must not fail a pass: it reads and counts; reporting is the caller's.
"""

from __future__ import annotations

from sqlalchemy import Boolean, ColumnElement, and_, exists, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from desired_state.shape import PlatformShape, shape_of
from desired_state.tables import agents, organizations

AGENT_WITHOUT_ORG_ID = "agent_without_org_id"
AGENT_OF_MISSING_ORG = "agent_of_missing_org"
AGENT_MISSING_VALUE = "agent_missing_value"
AGENT_ACTIVE_FLAGS_DISAGREE = "agent_active_flags_disagree"
"""``active`` and the legacy ``is_active`` differ: the controller follows ``active`` (the
contract's column) and only reports the disagreement."""


def usable_agent() -> ColumnElement[bool]:
    """An agent row a ``DesiredAgent`` can be made of (its organization is joined apart)."""
    return and_(
        agents.c.role.is_not(None), agents.c.name.is_not(None), agents.c.system_prompt.is_not(None)
    )


async def count_unusable_rows(
    conn: AsyncConnection, *, shape: PlatformShape | None = None
) -> dict[str, int]:
    """Agent rows the controller skips, by why: every kind this schema can have, zeros too."""
    found = shape if shape is not None else await shape_of(conn)
    org_exists = exists().where(organizations.c.id == agents.c.org_id)
    kinds = {
        AGENT_WITHOUT_ORG_ID: agents.c.org_id.is_(None),
        AGENT_OF_MISSING_ORG: and_(agents.c.org_id.is_not(None), ~org_exists),
        AGENT_MISSING_VALUE: and_(org_exists, ~usable_agent()),
    }
    if found.has("agents", "is_active"):
        legacy = literal_column("agents.is_active", Boolean)
        kinds[AGENT_ACTIVE_FLAGS_DISAGREE] = agents.c.active.is_distinct_from(legacy)
    query = select(*(func.count().filter(where).label(kind) for kind, where in kinds.items()))
    row = (await conn.execute(query.select_from(agents))).mappings().one()
    return {kind: int(row[kind]) for kind in kinds}
