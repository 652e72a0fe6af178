"""Read what the operator's commands show: each organization's status (with its name, and
``pending`` for a desired one not reconciled yet), the controller's overview (live daemons,
open alerts, the last complete pass) and the history of Vapi writes.

Why a module of its own: these reads join the platform's tables with the controller's and
serve people, not the reconcile. Must not write, and must not shape text (``controller.report``
does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

PENDING = "pending"


async def load_status_rows(
    conn: AsyncConnection, *, org_id: UUID | None = None
) -> list[dict[str, Any]]:
    """Every active organization and every one with a status row (or only ``org_id``):
    ``org_id, name, desired, state, reason, message, last_synced_at, unreconciled_since,
    updated_at, consecutive_failures``. A desired organization without a row is ``pending``."""
    rows = await conn.execute(
        text("""
            with desired as (
              select id from public.organizations where status = 'active'
            ), known as (
              select coalesce(d.id, s.org_id) as org_id, d.id is not null as desired,
                     s.state, s.reason, s.message, s.last_synced_at, s.unreconciled_since,
                     s.updated_at, s.consecutive_failures
              from desired d full join reconciler.org_status s on s.org_id = d.id
            )
            select k.org_id, o.name, k.desired, coalesce(k.state, :pending) as state,
                   k.reason, k.message, k.last_synced_at, k.unreconciled_since, k.updated_at,
                   coalesce(k.consecutive_failures, 0) as consecutive_failures
            from known k left join public.organizations o on o.id = k.org_id
            where cast(:org as uuid) is null or k.org_id = cast(:org as uuid)
        """),
        {"pending": PENDING, "org": org_id},
    )
    return [dict(row) for row in rows.mappings()]


@dataclass(frozen=True)
class Replica:
    replica_id: str
    heartbeat_at: datetime
    version: str | None
    mode: str | None
    paused: bool | None


@dataclass(frozen=True)
class Overview:
    """The header of ``status``."""

    now: datetime
    replicas: tuple[Replica, ...]
    """Daemons whose heartbeat is within the lease, with what they report running."""
    open_alerts: int
    last_complete_pass: datetime | None
    """Every desired organization has an outcome recorded since then (None: some have none)."""
    last_outcome: datetime | None


async def load_overview(conn: AsyncConnection, *, live_within: float) -> Overview:
    replicas = await conn.execute(
        text("""
            select replica_id, heartbeat_at, version, mode, paused from reconciler.replicas
            where heartbeat_at > now() - make_interval(secs => :within)
            order by replica_id
        """),
        {"within": live_within},
    )
    summary = await conn.execute(
        text("""
            select now() as now,
              (select count(*) from reconciler.alerts where status = 'firing') as open_alerts,
              (select case when bool_and(s.updated_at is not null) then min(s.updated_at) end
                 from public.organizations o
                 left join reconciler.org_status s on s.org_id = o.id
                 where o.status = 'active') as last_complete_pass,
              (select max(updated_at) from reconciler.org_status) as last_outcome
        """)
    )
    row = summary.one()
    return Overview(
        now=row.now,
        replicas=tuple(Replica(*r) for r in replicas),
        open_alerts=int(row.open_alerts),
        last_complete_pass=row.last_complete_pass,
        last_outcome=row.last_outcome,
    )


async def load_history(
    conn: AsyncConnection, *, org_id: UUID | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The audit log, newest first, with organization names: ``at, org_id, name, agent_id,
    action, method, path, vapi_id, cause, changes, status_code, outcome, duration_ms,
    reconcile_id, error``."""
    rows = await conn.execute(
        text("""
            select a.at, a.org_id, o.name, a.agent_id, a.action, a.method, a.path, a.vapi_id,
                   a.cause, a.changes, a.status_code, a.outcome, a.duration_ms,
                   a.reconcile_id, a.detail ->> 'error' as error,
                   a.detail -> 'fields' as legacy_fields, a.detail ->> 'cause' as legacy_cause
            from reconciler.audit_log a left join public.organizations o on o.id = a.org_id
            where cast(:org as uuid) is null or a.org_id = cast(:org as uuid)
            order by a.at desc, a.id desc
            limit :limit
        """),
        {"org": org_id, "limit": limit},
    )
    return [_history_row(dict(row)) for row in rows.mappings()]


def _history_row(row: dict[str, Any]) -> dict[str, Any]:
    """Rows written before revision 0008 kept the field names and cause in ``detail``."""
    legacy_fields, legacy_cause = row.pop("legacy_fields"), row.pop("legacy_cause")
    if not row["changes"] and legacy_fields:
        row["changes"] = [{"path": path} for path in legacy_fields]
    if row["cause"] is None and legacy_cause:
        row["cause"] = "adoption" if legacy_cause == "adopt" else legacy_cause
    return row


@dataclass(frozen=True)
class QueueStats:
    due: int
    """Rows due now and not held: the queue depth."""
    oldest_due_seconds: float
    """How long the longest-waiting of them has been due (0 when none)."""


async def load_queue_stats(conn: AsyncConnection) -> QueueStats:
    row = (
        await conn.execute(
            text("""
                select count(*) as due,
                       coalesce(extract(epoch from now() - min(due_at)), 0) as oldest
                from reconciler.work_items
                where due_at <= now() and (lease_expires_at is null or lease_expires_at < now())
            """)
        )
    ).one()
    return QueueStats(int(row.due), float(row.oldest))


async def load_org_states(conn: AsyncConnection) -> dict[UUID, str]:
    """Each organization's state as ``status`` shows it (``pending`` included)."""
    rows = await conn.execute(
        text("""
            select coalesce(d.id, s.org_id), coalesce(s.state, :pending)
            from (select id from public.organizations where status = 'active') d
            full join reconciler.org_status s on s.org_id = d.id
        """),
        {"pending": PENDING},
    )
    return {row[0]: row[1] for row in rows}
