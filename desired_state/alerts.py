"""Alert state in Postgres: incidents (one open per key) and their delivery outbox.

Opening and resolving are single idempotent statements: two replicas, or a restart, can run
them at any time and still page once per incident and resolve it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

NEVER_PAGE = ("observe_mode", "paused")
PAGE_AT_ONCE = ("ownership_conflict", "mass_update_guard")
"""Reasons that page without waiting for the threshold: a forged or swapped assistant id is
a security event, not drift that may clear by itself; a rollout held by the mass-update guard
waits for an operator's decision."""


@dataclass(frozen=True)
class Delivery:
    id: int
    sink: str
    event: str
    attempts: int
    alert_id: int
    key: str
    org_id: UUID | None
    reason: str
    message: str
    since: datetime
    fired_at: datetime
    resolved_at: datetime | None


async def open_incidents(
    conn: AsyncConnection, *, after_seconds: float, failures: int, sinks: Sequence[str]
) -> list[int]:
    """Organizations unreconciled past a threshold, with no open incident, get one."""
    opened = await conn.execute(
        text("""
            insert into reconciler.alerts (key, org_id, status, reason, message, since)
            select s.org_id::text, s.org_id, 'firing', coalesce(s.reason, 'unknown'),
                   coalesce(s.message, ''), s.unreconciled_since
            from reconciler.org_status s
            where s.state not in ('synced', 'paused')
              and s.unreconciled_since is not null
              and coalesce(s.reason, '') <> all(cast(:never as text[]))
              and (s.unreconciled_since <= now() - make_interval(secs => :after)
                   or (:failures > 0 and s.consecutive_failures >= :failures)
                   or s.reason = any(cast(:at_once as text[])))
            on conflict (key) where status = 'firing' do nothing
            returning id
        """),
        {
            "after": after_seconds,
            "failures": failures,
            "never": list(NEVER_PAGE),
            "at_once": list(PAGE_AT_ONCE),
        },
    )
    ids = [row.id for row in opened]
    await _queue(conn, ids, sinks, "firing")
    return ids


async def resolve_incidents(conn: AsyncConnection, *, sinks: Sequence[str]) -> list[int]:
    """Open organization incidents whose organization is synced, paused or gone."""
    resolved = await conn.execute(
        text("""
            update reconciler.alerts a set status = 'resolved', resolved_at = now()
            where a.status = 'firing' and a.org_id is not null and not exists (
              select 1 from reconciler.org_status s
              where s.org_id = a.org_id and s.state not in ('synced', 'paused')
                and coalesce(s.reason, '') <> all(cast(:never as text[])))
            returning a.id
        """),
        {"never": list(NEVER_PAGE)},
    )
    ids = [row.id for row in resolved]
    await _queue(conn, ids, sinks, "resolved")
    return ids


async def set_controller_incident(
    conn: AsyncConnection,
    *,
    key: str,
    firing: bool,
    reason: str,
    message: str,
    since: datetime | None,
    sinks: Sequence[str],
) -> int | None:
    """Open (``firing``) or resolve the controller-wide incident ``key``."""
    if firing:
        row = await conn.execute(
            text("""
                insert into reconciler.alerts (key, status, reason, message, since)
                values (:key, 'firing', :reason, :message,
                        coalesce(cast(:since as timestamptz), now()))
                on conflict (key) where status = 'firing' do nothing
                returning id
            """),
            {"key": key, "reason": reason, "message": message, "since": since},
        )
    else:
        row = await conn.execute(
            text(
                "update reconciler.alerts set status = 'resolved', resolved_at = now() "
                "where key = :key and status = 'firing' returning id"
            ),
            {"key": key},
        )
    found = row.scalar_one_or_none()
    if found is not None:
        await _queue(conn, [found], sinks, "firing" if firing else "resolved")
    return found


async def _queue(conn: AsyncConnection, ids: list[int], sinks: Sequence[str], event: str) -> None:
    if ids and sinks:
        await conn.execute(
            text("""
                insert into reconciler.alert_deliveries (alert_id, sink, event)
                select a, s, :event from unnest(cast(:ids as bigint[])) a,
                                         unnest(cast(:sinks as text[])) s
                on conflict do nothing
            """),
            {"ids": ids, "sinks": list(sinks), "event": event},
        )


async def claim_deliveries(
    conn: AsyncConnection, *, limit: int, lease_seconds: float
) -> list[Delivery]:
    """Due deliveries, leased so no other replica sends them meanwhile. A page whose
    incident resolved before the page went out (a retry in backoff, or a send cut short by a
    shutdown) is dropped, never sent after its resolution: a receiver would reopen it. A page
    being sent right now (its lease not lapsed) is left to finish, and the resolution waits
    for it."""
    await conn.execute(
        text("""
            update reconciler.alert_deliveries d
            set delivered_at = now(), last_error = 'not sent: resolved before it went out'
            where d.id in (
              select f.id from reconciler.alert_deliveries f
              join reconciler.alerts a on a.id = f.alert_id
              where f.delivered_at is null and f.event = 'firing' and a.status = 'resolved'
                and f.next_attempt_at <= now()
              for update of f skip locked)
        """)
    )
    rows = await conn.execute(
        text("""
            with due as (
              select d.id from reconciler.alert_deliveries d
              where d.delivered_at is null and d.next_attempt_at <= now()
                and not (d.event = 'resolved' and exists (
                  select 1 from reconciler.alert_deliveries f
                  where f.alert_id = d.alert_id and f.sink = d.sink and f.event = 'firing'
                    and f.delivered_at is null))
              order by d.next_attempt_at limit :limit for update skip locked
            )
            update reconciler.alert_deliveries d
            set next_attempt_at = now() + make_interval(secs => :lease), attempts = d.attempts + 1
            from due, reconciler.alerts a
            where d.id = due.id and a.id = d.alert_id
            returning d.id, d.sink, d.event, d.attempts, a.id as alert_id, a.key, a.org_id,
                      a.reason, a.message, a.since, a.fired_at, a.resolved_at
        """),
        {"limit": limit, "lease": lease_seconds},
    )
    return [Delivery(**dict(row)) for row in rows.mappings()]


async def finish_delivery(
    conn: AsyncConnection, delivery: Delivery, *, error: str | None, retry_in: float
) -> None:
    params: dict[str, Any] = {"id": delivery.id, "error": error, "retry": retry_in}
    if error is None:
        sql = "update reconciler.alert_deliveries set delivered_at = now(), last_error = null "
    else:
        sql = (
            "update reconciler.alert_deliveries set last_error = :error, "
            "next_attempt_at = now() + make_interval(secs => :retry) "
        )
    await conn.execute(text(sql + "where id = :id"), params)
