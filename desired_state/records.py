"""Record what the controller did: the registry of Vapi objects (intent before a create,
baseline after a write), ``agents.vapi_assistant_id``, ``org_tools``, status and audit.

Every function runs in the caller's transaction and commits nothing itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import and_, delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.core.outcome import State
from desired_state.tables import agents, audit_log, org_status, org_tools, vapi_objects

Kind = Literal["assistant", "tool"]
AuditOutcome = Literal["ok", "error", "unknown"]


async def record_intent(
    conn: AsyncConnection, *, kind: Kind, owner_key: str, org_id: UUID | None
) -> None:
    """Before a POST that cannot be repeated safely: say it may have happened."""
    statement = insert(vapi_objects).values(
        kind=kind, owner_key=owner_key, org_id=org_id, state="creating", intent_at=func.now()
    )
    await conn.execute(
        statement.on_conflict_do_update(
            constraint="vapi_objects_kind_owner_key_key",
            set_={"state": "creating", "intent_at": func.now(), "updated_at": func.now()},
        )
    )


async def record_present(
    conn: AsyncConnection,
    *,
    kind: Kind,
    owner_key: str,
    org_id: UUID | None,
    vapi_id: str,
    desired_hash: str | None,
    observed_hash: str | None,
) -> None:
    """The Vapi object exists with this id; the baseline is the response of the last write."""
    values = {
        "org_id": org_id,
        "vapi_id": vapi_id,
        "state": "present",
        "desired_hash": desired_hash,
        "observed_hash": observed_hash,
        "updated_at": func.now(),
    }
    statement = insert(vapi_objects).values(kind=kind, owner_key=owner_key, **values)
    await conn.execute(
        statement.on_conflict_do_update(constraint="vapi_objects_kind_owner_key_key", set_=values)
    )


async def forget(conn: AsyncConnection, *, vapi_id: str) -> None:
    await conn.execute(delete(vapi_objects).where(vapi_objects.c.vapi_id == vapi_id))


async def link_agent(conn: AsyncConnection, *, agent_id: UUID, vapi_id: str) -> None:
    await conn.execute(
        update(agents)
        .where(agents.c.id == agent_id, agents.c.vapi_assistant_id.is_distinct_from(vapi_id))
        .values(vapi_assistant_id=vapi_id)
    )


@dataclass(frozen=True)
class ToolLink:
    tool_name: str
    vapi_tool_id: str
    definition_hash: str


async def replace_org_tools(
    conn: AsyncConnection, *, org_id: UUID, links: Mapping[str, ToolLink]
) -> None:
    """Make ``org_tools`` hold exactly ``links`` for the organization."""
    if links:
        rows = [
            {
                "org_id": org_id,
                "tool_name": link.tool_name,
                "vapi_tool_id": link.vapi_tool_id,
                "definition_hash": link.definition_hash,
            }
            for link in links.values()
        ]
        statement = insert(org_tools).values(rows)
        changed = and_(
            org_tools.c.vapi_tool_id.is_distinct_from(statement.excluded.vapi_tool_id)
            | org_tools.c.definition_hash.is_distinct_from(statement.excluded.definition_hash)
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["org_id", "tool_name"],
                set_={
                    "vapi_tool_id": statement.excluded.vapi_tool_id,
                    "definition_hash": statement.excluded.definition_hash,
                    "updated_at": func.now(),
                },
                where=changed,
            )
        )
    await conn.execute(
        delete(org_tools).where(
            org_tools.c.org_id == org_id, org_tools.c.tool_name.not_in(list(links))
        )
    )


async def forget_status(conn: AsyncConnection, *, org_id: UUID) -> None:
    await conn.execute(delete(org_status).where(org_status.c.org_id == org_id))


async def write_status(
    conn: AsyncConnection,
    *,
    org_id: UUID,
    state: State,
    message: str,
    reason: str | None = None,
    failed: bool = False,
) -> None:
    """Upsert the organization's status. ``unreconciled_since`` keeps its first value until
    the organization is synced or paused; ``consecutive_failures`` counts failed attempts."""
    in_sync = state in ("synced", "paused")
    values: dict[str, Any] = {
        "state": state,
        "message": message,
        "reason": reason,
        "updated_at": func.now(),
    }
    statement = insert(org_status).values(
        org_id=org_id,
        last_synced_at=func.now() if state == "synced" else None,
        unreconciled_since=None if in_sync else func.now(),
        consecutive_failures=1 if failed else 0,
        **values,
    )
    excluded = statement.excluded
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["org_id"],
            set_={
                **values,
                "last_synced_at": func.coalesce(
                    excluded.last_synced_at, org_status.c.last_synced_at
                ),
                "unreconciled_since": None
                if in_sync
                else func.coalesce(org_status.c.unreconciled_since, func.now()),
                "consecutive_failures": org_status.c.consecutive_failures + 1 if failed else 0,
            },
        )
    )


@dataclass(frozen=True)
class AuditEntry:
    reconcile_id: str
    org_id: UUID | None
    action: str
    vapi_id: str | None
    method: str
    path: str
    status_code: int | None
    outcome: AuditOutcome
    detail: Mapping[str, Any]


async def write_audit(conn: AsyncConnection, entries: list[AuditEntry]) -> None:
    if entries:
        await conn.execute(
            insert(audit_log),
            [
                {
                    "reconcile_id": e.reconcile_id,
                    "org_id": e.org_id,
                    "action": e.action,
                    "vapi_id": e.vapi_id,
                    "method": e.method,
                    "path": e.path,
                    "status_code": e.status_code,
                    "outcome": e.outcome,
                    "detail": dict(e.detail),
                }
                for e in entries
            ],
        )
