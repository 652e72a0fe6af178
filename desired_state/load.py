"""Load a desired-state snapshot: one query per table for a whole batch of organizations.

The queries are built from the platform's shape (``desired_state.shape``): optional columns
that are absent are left out, and a shape with problems (a hidden row, a missing privilege)
raises ``PlatformShapeError`` before anything is read, so a pass never acts on part of the
desired state. Agent rows no assistant can be made of are skipped here and counted by
``desired_state.unusable``. Must not write.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar
from uuid import UUID

from psycopg import AsyncCursor
from psycopg.rows import BaseRowFactory, dict_row, tuple_row
from sqlalchemy import ARRAY, Text, any_, bindparam, distinct, func, literal, null, or_, select
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.core.desired import (
    TOOL_ROW_RECORD,
    TOOL_ROW_UNIT,
    AgentRow,
    Baseline,
    DesiredAgent,
    DesiredState,
    DesiredTool,
    OrgRows,
)
from desired_state.direct import Compiled, DirectConnection, compiled, driver, uuid_array
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
_IDS = bindparam("ids", type_=ARRAY(PG_UUID(as_uuid=True)))
"""The batch's organization ids, bound as one array (``= any(:ids)``): the statement's text
is the same for every batch, so it is built, compiled and prepared once."""


def _agent_columns(shape: PlatformShape) -> list[Any]:
    """The agent columns to read: optional ones only where the platform has them."""
    return [c for c in _AGENT_COLUMNS if shape.has("agents", c.name)]


@dataclass(frozen=True)
class _Queries:
    """The statements of one load, built and compiled once per platform shape and scope:
    they run on the session's psycopg connection (``desired_state.direct``), since a batch's
    load is on the hot path of every claim."""

    orgs: Compiled
    agents: Compiled
    tools: Compiled
    baselines: Compiled
    known: Compiled
    intents: Compiled
    shared: Compiled
    contested: Compiled | None
    links: Compiled
    tool_ids: Compiled


@lru_cache(maxsize=16)
def _queries(agent_columns: tuple[str, ...], numbers: bool, hashed: bool, batch: bool) -> _Queries:
    active = (organizations.c.status == "active", agents.c.active.is_(True), usable_agent())
    orgs = select(organizations.c.id).where(organizations.c.status == "active")
    agent_query = (
        select(*(agents.c[name] for name in agent_columns))
        .join(organizations, organizations.c.id == agents.c.org_id)
        .where(*active)
        .order_by(agents.c.org_id, agents.c.role)
    )
    known = select(org_status.c.org_id)
    baselines = select(
        vapi_objects.c.vapi_id,
        vapi_objects.c.desired_hash,
        vapi_objects.c.observed_hash,
        vapi_objects.c.row_hash,
        vapi_objects.c.settings_hash,
    ).where(vapi_objects.c.vapi_id.is_not(None))
    intents = select(vapi_objects.c.owner_key, vapi_objects.c.intent_at).where(
        vapi_objects.c.kind == "assistant", vapi_objects.c.state == "creating"
    )
    shared = (
        select(agents.c.vapi_assistant_id)
        .join(organizations, organizations.c.id == agents.c.org_id)
        .where(*active, agents.c.vapi_assistant_id.is_not(None))
        .group_by(agents.c.vapi_assistant_id)
        .having(func.count(distinct(agents.c.org_id)) > 1)
    )
    number = agents.c.vapi_phone_number_id
    named = _named_numbers()
    definition = org_tools.c.definition_hash if hashed else null()
    links = select(org_tools.c.org_id, _tool_rows_digest(definition)).group_by(org_tools.c.org_id)
    if batch:
        orgs = orgs.where(organizations.c.id == any_(_IDS))
        agent_query = agent_query.where(agents.c.org_id == any_(_IDS))
        known = known.where(org_status.c.org_id == any_(_IDS))
        baselines = baselines.where(
            or_(vapi_objects.c.org_id == any_(_IDS), vapi_objects.c.kind == "tool")
        )
        intents = intents.where(vapi_objects.c.org_id == any_(_IDS))
        # only ids this batch's agents name: not a scan of every agent
        shared = shared.where(
            agents.c.vapi_assistant_id.in_(
                select(agents.c.vapi_assistant_id).where(agents.c.org_id == any_(_IDS))
            )
        )
        named = named.where(number.in_(select(number).where(agents.c.org_id == any_(_IDS))))
        links = links.where(org_tools.c.org_id == any_(_IDS))
    contested = None
    if numbers:
        grouped = named.subquery()
        contested = (
            select(grouped.c.vapi_phone_number_id)
            .group_by(grouped.c.vapi_phone_number_id)
            .having(func.count(distinct(grouped.c.org_id)) > 1)
        )
    tools = select(tool_definitions).order_by(tool_definitions.c.name)
    return _Queries(
        orgs=compiled(orgs),
        agents=compiled(agent_query),
        tools=compiled(tools),
        baselines=compiled(baselines),
        known=compiled(known),
        intents=compiled(intents),
        shared=compiled(shared),
        contested=compiled(contested) if contested is not None else None,
        links=compiled(links),
        tool_ids=compiled(_TOOL_IDS),
    )


def _tool_rows_digest(definition: Any) -> Any:
    """What ``tool_rows_digest`` computes, in SQL: one short value per organization instead
    of every ``org_tools`` row (the rows are read only to be compared)."""
    name = org_tools.c.tool_name
    row = func.concat_ws(
        TOOL_ROW_UNIT, name, org_tools.c.vapi_tool_id, func.coalesce(definition, "")
    )
    ordered = aggregate_order_by(literal(TOOL_ROW_RECORD), name.collate("C"))
    return func.md5(func.string_agg(row, ordered)).label("digest")


async def load_desired(
    conn: AsyncConnection,
    *,
    org_ids: Collection[UUID] | None = None,
    shape: PlatformShape | None = None,
) -> DesiredState:
    """The organizations to converge (all, or ``org_ids``), tools and the registry.
    ``shape``: the platform's, read once per database and role when not given."""
    shape = await usable_shape(conn, shape)
    columns = tuple(c.name for c in _agent_columns(shape))
    q = _queries(
        columns,
        shape.has("agents", "vapi_phone_number_id"),
        shape.has("org_tools", "definition_hash"),
        org_ids is not None,
    )
    bound = {} if org_ids is None else {"ids": uuid_array(org_ids)}  # dumped once, bound ten times
    raw = await driver(conn)
    async with raw.pipeline():  # every query sent at once: one round trip for the batch
        sent: list[AsyncCursor[tuple[Any, ...]]] = [
            await _send(raw, query, bound)
            for query in (q.orgs, q.baselines, q.known, q.intents, q.shared, q.links, q.tool_ids)
        ]
        agent_rows: AsyncCursor[tuple[Any, ...]] = await _send(raw, q.agents, bound)
        tool_rows = await _send(raw, q.tools, bound, dict_row)
        contested_rows: AsyncCursor[tuple[Any, ...]] | None = (
            await _send(raw, q.contested, bound) if q.contested else None
        )
    org_rows, baseline_rows, known_rows, intent_rows, shared_rows, link_rows, tool_id_rows = [
        await cursor.fetchall() for cursor in sent
    ]
    grouped: dict[UUID, list[AgentRow]] = {org_id: [] for (org_id,) in org_rows}
    at = columns.index("org_id")
    for row in await agent_rows.fetchall():
        grouped.setdefault(row[at], []).append(row)
    tools = tuple(
        DesiredTool(
            name=row["name"],
            description=row["description"],
            parameters=row["parameters"],
            path=row["path"],
            is_async=row["is_async"],
            roles=tuple(row["roles"]),
            enabled=row["enabled"],
        )
        for row in await tool_rows.fetchall()
    )
    contested = await contested_rows.fetchall() if contested_rows else []
    return DesiredState(
        orgs=OrgRows({o: tuple(rows) for o, rows in grouped.items()}, _agent_of(columns)),
        tools=tools,
        tool_ids=dict(tool_id_rows),
        baselines={row[0]: Baseline(*row) for row in baseline_rows},
        known_org_ids=frozenset(org_id for (org_id,) in known_rows),
        intents={UUID(owner_key): at for owner_key, at in intent_rows},
        shared_assistant_ids=frozenset(vapi_id for (vapi_id,) in shared_rows),
        contested_numbers=frozenset(number for (number,) in contested),
        org_tools=dict(link_rows),
        org_tools_hashed=shape.has("org_tools", "definition_hash"),
    )


Row = TypeVar("Row")


async def _send(
    raw: DirectConnection,
    query: Compiled,
    bound: Mapping[str, Any],
    rows: BaseRowFactory[Row] = tuple_row,  # type: ignore[assignment]
) -> AsyncCursor[Row]:
    """``query`` sent in the connection's pipeline; its rows are read after the sync."""
    cursor = raw.cursor(row_factory=rows)
    await cursor.execute(query.sql, query.params(bound))
    return cursor


_NUMBERS = bindparam("numbers", type_=ARRAY(Text))


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


async def numbers_named(conn: AsyncConnection, number_ids: Collection[str]) -> set[str]:
    """Which of ``number_ids`` some desired inbound agent names (those are never released)."""
    if not number_ids:
        return set()
    query = _named_numbers().where(agents.c.vapi_phone_number_id == any_(_NUMBERS))
    return {
        row.vapi_phone_number_id for row in await conn.execute(query, {"numbers": list(number_ids)})
    }


async def has_phone_numbers(conn: AsyncConnection) -> bool:
    """Whether the platform has ``agents.vapi_phone_number_id`` (else no phone work at all)."""
    return (await usable_shape(conn)).has("agents", "vapi_phone_number_id")


_TOOL_IDS = select(vapi_objects.c.owner_key, vapi_objects.c.vapi_id).where(
    vapi_objects.c.kind == "tool",
    vapi_objects.c.state == "present",
    vapi_objects.c.vapi_id.is_not(None),
)


async def load_tool_ids(conn: AsyncConnection) -> dict[str, str]:
    """Tool name -> Vapi id of every tool the registry holds as present."""
    return {row.owner_key: row.vapi_id for row in await conn.execute(_TOOL_IDS)}


@lru_cache(maxsize=16)
def _agent_of(columns: tuple[str, ...]) -> Callable[[AgentRow], DesiredAgent]:
    """An agent row, its columns in this order, to a ``DesiredAgent``."""
    return lambda row: _agent(dict(zip(columns, row, strict=True)))


def _agent(row: Mapping[str, Any]) -> DesiredAgent:
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
