"""Load a desired-state snapshot: one query per table for a whole batch of organizations.

The queries are built from the platform's shape (``desired_state.shape``): optional columns
that are absent are left out, and a shape with problems (a hidden row, a missing privilege)
raises ``PlatformShapeError`` before anything is read, so a pass never acts on part of the
desired state. Agent rows no assistant can be made of are skipped here and counted by
``desired_state.unusable``. Must not write.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import distinct, func, null, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.core.desired import (
    Baseline,
    DesiredAgent,
    DesiredOrg,
    DesiredState,
    DesiredTool,
    ToolRow,
)
from desired_state.shape import PlatformShape, usable_shape
from desired_state.tables import (
    agents,
    org_status,
    org_tools,
    organizations,
    tool_definitions,
    vapi_objects,
)
from desired_state.unusable import usable_agent

_AGENT_COLUMNS = [c for c in agents.c if c.name not in ("created_at", "updated_at")]


def _agent_columns(shape: PlatformShape) -> list[Any]:
    """The agent columns to read: optional ones only where the platform has them."""
    return [c for c in _AGENT_COLUMNS if shape.has("agents", c.name)]


async def load_desired(
    conn: AsyncConnection,
    *,
    org_ids: Collection[UUID] | None = None,
    shape: PlatformShape | None = None,
) -> DesiredState:
    """The organizations to converge (all, or ``org_ids``), tools and the registry.
    ``shape``: the platform's, read once per database and role when not given."""
    shape = await usable_shape(conn, shape)
    org_query = select(organizations.c.id).where(organizations.c.status == "active")
    agent_query = (
        select(*_agent_columns(shape))
        .join(organizations, organizations.c.id == agents.c.org_id)
        .where(organizations.c.status == "active", agents.c.active.is_(True), usable_agent())
        .order_by(agents.c.org_id, agents.c.role)
    )
    known_query = select(org_status.c.org_id)
    if org_ids is not None:
        ids = list(org_ids)
        org_query = org_query.where(organizations.c.id.in_(ids))
        agent_query = agent_query.where(agents.c.org_id.in_(ids))
        known_query = known_query.where(org_status.c.org_id.in_(ids))
    grouped: dict[UUID, list[DesiredAgent]] = {row.id: [] for row in await conn.execute(org_query)}
    for row in (await conn.execute(agent_query)).mappings():
        grouped.setdefault(row["org_id"], []).append(_agent(row))
    tools = tuple(
        DesiredTool(
            name=row.name,
            description=row.description,
            parameters=row.parameters,
            path=row.path,
            is_async=row.is_async,
            roles=tuple(row.roles),
            enabled=row.enabled,
        )
        for row in await conn.execute(select(tool_definitions).order_by(tool_definitions.c.name))
    )
    baseline_query = select(vapi_objects).where(vapi_objects.c.vapi_id.is_not(None))
    if org_ids is not None:
        baseline_query = baseline_query.where(
            or_(vapi_objects.c.org_id.in_(ids), vapi_objects.c.kind == "tool")
        )
    baselines = {
        row.vapi_id: Baseline(
            row.vapi_id, row.desired_hash, row.observed_hash, row.row_hash, row.settings_hash
        )
        for row in await conn.execute(baseline_query)
    }
    known = frozenset(row.org_id for row in await conn.execute(known_query))
    intent_query = select(vapi_objects.c.owner_key, vapi_objects.c.intent_at).where(
        vapi_objects.c.kind == "assistant", vapi_objects.c.state == "creating"
    )
    if org_ids is not None:
        intent_query = intent_query.where(vapi_objects.c.org_id.in_(ids))
    intents = {UUID(row.owner_key): row.intent_at for row in await conn.execute(intent_query)}
    shared_query = (
        select(agents.c.vapi_assistant_id)
        .join(organizations, organizations.c.id == agents.c.org_id)
        .where(
            organizations.c.status == "active",
            agents.c.active.is_(True),
            usable_agent(),
            agents.c.vapi_assistant_id.is_not(None),
        )
        .group_by(agents.c.vapi_assistant_id)
        .having(func.count(distinct(agents.c.org_id)) > 1)
    )
    if org_ids is not None:  # only ids this batch's agents name: not a scan of every agent
        shared_query = shared_query.where(
            agents.c.vapi_assistant_id.in_(
                select(agents.c.vapi_assistant_id).where(agents.c.org_id.in_(ids))
            )
        )
    shared = frozenset(row.vapi_assistant_id for row in await conn.execute(shared_query))
    contested_numbers = (
        await _contested_numbers(conn, org_ids)
        if shape.has("agents", "vapi_phone_number_id")
        else set()
    )
    links_query = select(
        org_tools.c.org_id,
        org_tools.c.tool_name,
        org_tools.c.vapi_tool_id,
        (
            org_tools.c.definition_hash
            if shape.has("org_tools", "definition_hash")
            else null().label("definition_hash")
        ),
    )
    if org_ids is not None:
        links_query = links_query.where(org_tools.c.org_id.in_(ids))
    links: dict[UUID, set[ToolRow]] = {}
    for link in await conn.execute(links_query):
        links.setdefault(link.org_id, set()).add(
            (link.tool_name, link.vapi_tool_id, link.definition_hash)
        )
    return DesiredState(
        orgs={org_id: DesiredOrg(org_id, tuple(found)) for org_id, found in grouped.items()},
        tools=tools,
        tool_ids=await load_tool_ids(conn),
        baselines=baselines,
        known_org_ids=known,
        intents=intents,
        shared_assistant_ids=shared,
        contested_numbers=frozenset(contested_numbers),
        org_tools={org_id: frozenset(rows) for org_id, rows in links.items()},
    )


def _named_numbers() -> Any:
    """``(number, org)`` of every inbound agent of the desired set that names a number."""
    number = agents.c.vapi_phone_number_id
    return (
        select(number, agents.c.org_id)
        .join(organizations, organizations.c.id == agents.c.org_id)
        .where(
            organizations.c.status == "active",
            agents.c.active.is_(True),
            agents.c.role == "inbound",
            usable_agent(),
            number.is_not(None),
        )
    )


async def _contested_numbers(conn: AsyncConnection, org_ids: Collection[UUID] | None) -> set[str]:
    """Numbers named by inbound agents of more than one organization: written for none
    (of those the agents of ``org_ids`` name, when given)."""
    query = _named_numbers()
    if org_ids is not None:
        number = agents.c.vapi_phone_number_id
        query = query.where(number.in_(select(number).where(agents.c.org_id.in_(list(org_ids)))))
    named = query.subquery()
    rows = await conn.execute(
        select(named.c.vapi_phone_number_id)
        .group_by(named.c.vapi_phone_number_id)
        .having(func.count(distinct(named.c.org_id)) > 1)
    )
    return {row.vapi_phone_number_id for row in rows}


async def numbers_named(conn: AsyncConnection, number_ids: Collection[str]) -> set[str]:
    """Which of ``number_ids`` some desired inbound agent names (those are never released)."""
    if not number_ids:
        return set()
    query = _named_numbers().where(agents.c.vapi_phone_number_id.in_(list(number_ids)))
    return {row.vapi_phone_number_id for row in await conn.execute(query)}


async def has_phone_numbers(conn: AsyncConnection) -> bool:
    """Whether the platform has ``agents.vapi_phone_number_id`` (else no phone work at all)."""
    return (await usable_shape(conn)).has("agents", "vapi_phone_number_id")


async def load_tool_ids(conn: AsyncConnection) -> dict[str, str]:
    """Tool name -> Vapi id of every tool the registry holds as present."""
    query = select(vapi_objects.c.owner_key, vapi_objects.c.vapi_id).where(
        vapi_objects.c.kind == "tool",
        vapi_objects.c.state == "present",
        vapi_objects.c.vapi_id.is_not(None),
    )
    return {row.owner_key: row.vapi_id for row in await conn.execute(query)}


def _agent(row: Any) -> DesiredAgent:
    return DesiredAgent(
        agent_id=row["id"],
        org_id=row["org_id"],
        role=row["role"],
        name=row["name"],
        system_prompt=row["system_prompt"],
        first_message=row["first_message"],
        voice=row["voice"],
        voice_provider=row["voice_provider"],
        language=row["language"],
        model=row["model"],
        temperature=_number(row["temperature"]),
        max_tokens=row["max_tokens"],
        max_call_duration=row["max_call_duration"],
        voice_stability=_number(row.get("voice_stability")),
        voice_similarity_boost=_number(row.get("voice_similarity_boost")),
        vapi_phone_number_id=row.get("vapi_phone_number_id"),
        vapi_assistant_id=row["vapi_assistant_id"],
    )


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


async def load_status(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every status row, as the ``status`` command shows them."""
    rows = await conn.execute(select(org_status))
    return [dict(row) for row in rows.mappings()]


async def load_state_counts(conn: AsyncConnection) -> dict[str, int]:
    """Organizations per state, and ``unreconciled``: out of sync, not paused, paging."""
    rows = await conn.execute(select(org_status.c.state, func.count()).group_by(org_status.c.state))
    counts = {row[0]: int(row[1]) for row in rows}
    unreconciled = await conn.execute(
        select(func.count())
        .select_from(org_status)
        .where(
            org_status.c.state.not_in(["synced", "paused"]),
            func.coalesce(org_status.c.reason, "") != "observe_mode",
        )
    )
    counts["unreconciled"] = int(unreconciled.scalar_one())
    return counts
