"""The work queue: one durable row per organization (and one for the account's tools).

Claimed with ``FOR UPDATE SKIP LOCKED`` under a lease; every claim bumps a fencing token, and
a completion only lands while the token is still ours. A change during a reconcile bumps the
row's generation, so completion makes it due again: exactly one more pass. Backoff state
(attempts, due time, last error) lives in the row and survives restarts.

Two lanes, so a clinic's edit does not wait behind a cold start: work somebody is waiting for
(a change of the platform's rows, drift seen in Vapi) is ``Lane.INTERACTIVE``; work nobody is
waiting for (start-up, a re-render of everything, the resync) is ``Lane.BULK``. The lane is
the row's ``interactive_since`` (NULL: bulk), so every replica claims in the same order.

Must not: keep queue state in a process (the rows are the queue, shared by every replica);
let either lane starve the other (``claim`` keeps ``BULK_SHARE`` of a claim for bulk work);
move a due time later when marking work due (``least(due_at, now())``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.core.keys import TOOLS, AccountTools, WorkKey
from desired_state.direct import DirectConnection, driver, json_rows

TOOLS_ROW = UUID(int=0)
"""How the account's tools (``controller.core.keys.TOOLS``) are keyed in the table."""

REPLICAS = "vapi_reconciler_replicas"
"""NOTIFY channel: a replica joined or left (payload: its id); the others count again."""


def row_id(key: WorkKey) -> UUID:
    return TOOLS_ROW if isinstance(key, AccountTools) else key


def work_key(row: UUID) -> WorkKey:
    return TOOLS if row == TOOLS_ROW else row


class Lane(enum.Enum):
    """Who waits for a piece of work; see the module docstring."""

    INTERACTIVE = "interactive"
    """A change of the platform's rows (the triggers), drift seen in Vapi: claimed first."""
    BULK = "bulk"
    """Start-up, every organization re-rendered, the resync: keeps ``BULK_SHARE`` of claims."""


BULK_SHARE = 0.2
"""The share of a claim kept for due bulk rows while interactive rows wait: bulk work always
progresses. Slots bulk does not need go to interactive work, and the other way round."""


def bulk_slots(limit: int, *, share: float = BULK_SHARE) -> int:
    """Slots of a claim of ``limit`` rows kept for bulk work: ``ceil(share * limit)``, less
    one, if need be, so that a claim always has room for one interactive row (a claim of one
    row takes interactive work first)."""
    return max(0, min(math.ceil(share * limit), limit - 1))


@dataclass(frozen=True)
class Claim:
    key: WorkKey
    token: int
    generation: int
    attempts: int
    lane: Lane


_CLAIMABLE = """
    due_at <= now() and (lease_expires_at is null or lease_expires_at < now())
    and (org_id = %(tools)s) = %(want_tools)s and (select open from gate)
"""
"""Due, not held, of the kind asked for, and past the tools gate."""
_CLAIM = f"""
    with gate as (
      select %(want_tools)s or not exists (
        select 1 from reconciler.work_items t
        where t.org_id = %(tools)s
          and (t.due_at <= now() or t.lease_expires_at > now())) as open
    ), reserved as materialized (
      select org_id from reconciler.work_items
      where {_CLAIMABLE} and interactive_since is null
      order by due_at
      limit %(reserve)s
      for update skip locked
    ), interactive as materialized (
      select org_id from reconciler.work_items
      where {_CLAIMABLE} and interactive_since is not null
      order by interactive_since, due_at
      limit %(limit)s - (select count(*) from reserved)
      for update skip locked
    ), filling as materialized (
      select org_id from reconciler.work_items
      where {_CLAIMABLE} and interactive_since is null
        and org_id not in (select org_id from reserved)
      order by due_at
      limit %(limit)s - (select count(*) from reserved) - (select count(*) from interactive)
      for update skip locked
    ), claimed as (
      update reconciler.work_items w
      set lease_owner = %(owner)s,
          lease_expires_at = now() + make_interval(secs => %(lease)s),
          fencing_token = w.fencing_token + 1,
          claimed_generation = w.generation,
          updated_at = now()
      where w.org_id in (select org_id from reserved
                         union all select org_id from interactive
                         union all select org_id from filling)
      returning w.org_id, w.fencing_token, w.generation, w.attempts,
                w.interactive_since, w.due_at
    )
    select org_id, fencing_token, generation, attempts, interactive_since
    from claimed order by interactive_since nulls last, due_at
"""
"""Built once: claims run on the session's psycopg connection (``desired_state.direct``)."""


async def claim(
    conn: AsyncConnection,
    *,
    owner: str,
    limit: int,
    lease_seconds: float,
    tools: bool = False,
    bulk_share: float = BULK_SHARE,
) -> list[Claim]:
    """Claim up to ``limit`` due rows, in one statement: the account's tools row when
    ``tools``, else organizations, and those only while the tools are neither due nor being
    worked on anywhere (assistants link tool ids: creating them before the tools costs a
    relink each).

    Interactive rows first, longest waiting first; ``bulk_slots(limit)`` of the claim go to
    the oldest due bulk rows, and whatever one lane leaves, the other fills. Each lane is
    oldest first, one row per organization, so no organization overtakes another twice.
    Returned interactive first, in claim order."""
    raw = await driver(conn)
    found = await raw.execute(
        _CLAIM,
        {
            "owner": owner,
            "limit": limit,
            "reserve": bulk_slots(limit, share=bulk_share),
            "lease": float(lease_seconds),
            "tools": TOOLS_ROW,
            "want_tools": tools,
        },
    )
    return [
        Claim(
            work_key(org_id),
            token,
            generation,
            attempts,
            Lane.BULK if interactive_since is None else Lane.INTERACTIVE,
        )
        for org_id, token, generation, attempts, interactive_since in await found.fetchall()
    ]


@dataclass(frozen=True)
class Completion:
    """A finished claim: due again in ``due_in`` seconds (None: not until a change)."""

    claimed: Claim
    due_in: float | None
    attempts: int
    error: str | None


_COMPLETE = """
            update reconciler.work_items w
            set lease_owner = null, lease_expires_at = null,
                due_at = case when w.generation > w.claimed_generation then now()
                              when c.due_in is null then 'infinity'::timestamptz
                              else now() + make_interval(secs => c.due_in) end,
                attempts = case when w.generation > w.claimed_generation then 0
                                else c.attempts end,
                interactive_since = case when w.generation > w.claimed_generation
                                         then w.interactive_since end,
                last_error = c.error, updated_at = now()
            from jsonb_to_recordset(cast(%(rows)s as jsonb))
                 as c(org_id uuid, token bigint, due_in float8, attempts int, error text)
            where w.org_id = c.org_id and w.fencing_token = c.token
            returning w.org_id
        """


async def complete(conn: DirectConnection, completions: Sequence[Completion]) -> set[WorkKey]:
    """Release claims, one statement for any number; a row that changed while held is due
    at once and keeps its lane, any other returns to the bulk lane. Returns the organizations
    whose completion landed: the others lost their lease (fenced out) and record nothing."""
    if not completions:
        return set()
    rows = await conn.execute(
        _COMPLETE,
        {
            "rows": json_rows(
                {
                    "org_id": row_id(c.claimed.key),
                    "token": c.claimed.token,
                    "due_in": c.due_in,
                    "attempts": c.attempts,
                    "error": c.error,
                }
                for c in completions
            )
        },
    )
    return {work_key(org_id) for (org_id,) in await rows.fetchall()}


async def renew(
    conn: AsyncConnection, claims: Iterable[Claim], *, lease_seconds: float
) -> set[WorkKey]:
    """Extend the leases still held; returns the organizations whose lease was lost (another
    replica took the row over). A row completed meanwhile keeps its token but has no owner:
    it is neither renewed (that would hide it from every claim until the lease ran out) nor
    lost."""
    held = list(claims)
    if not held:
        return set()
    rows = await conn.execute(
        text("""
            with ours as (
              select w.org_id, w.lease_owner is not null as held
              from reconciler.work_items w
              join unnest(cast(:orgs as uuid[]), cast(:tokens as bigint[])) as c(org_id, token)
                on w.org_id = c.org_id and w.fencing_token = c.token
              for update of w
            ), renewed as (
              update reconciler.work_items w
              set lease_expires_at = now() + make_interval(secs => :lease)
              from ours where w.org_id = ours.org_id and ours.held
            )
            select org_id from ours
        """),
        {
            "lease": lease_seconds,
            "orgs": [row_id(c.key) for c in held],
            "tokens": [c.token for c in held],
        },
    )
    return {c.key for c in held} - {work_key(r.org_id) for r in rows}


async def release(conn: AsyncConnection, claims: Iterable[Claim]) -> None:
    """Give claims back without a result (shutdown): due at once for whoever comes next,
    in the lane they were in. A row completed meanwhile keeps its token but has no owner
    (a group commit that landed as its visit was cancelled): it keeps its schedule."""
    held = list(claims)
    if held:
        await conn.execute(
            text("""
                update reconciler.work_items w
                set lease_owner = null, lease_expires_at = null, due_at = now()
                from unnest(cast(:orgs as uuid[]), cast(:tokens as bigint[])) as c(org_id, token)
                where w.org_id = c.org_id and w.fencing_token = c.token
                  and w.lease_owner is not null
            """),
            {"orgs": [row_id(c.key) for c in held], "tokens": [c.token for c in held]},
        )


async def ensure_rows(conn: AsyncConnection, keys: Iterable[WorkKey] = ()) -> int:
    """Rows for every organization, status row, the tools and ``org_ids``; returns how many
    were missing. Existing rows keep their schedule; new ones are due now, in the bulk lane."""
    inserted = await conn.execute(
        text("""
            insert into reconciler.work_items (org_id)
            select id from public.organizations
            union select org_id from reconciler.org_status
            union select unnest(cast(:extra as uuid[]))
            on conflict (org_id) do nothing
        """),
        {"extra": [TOOLS_ROW, *map(row_id, keys)]},
    )
    return inserted.rowcount


async def mark_due(conn: AsyncConnection, keys: Iterable[WorkKey] | None, *, lane: Lane) -> None:
    """Make work rows (every organization's when None) due now, as a change would, in
    ``lane``. A row already interactive stays so (a bulk mark never demotes it) and keeps its
    place in that lane."""
    ids = None if keys is None else [row_id(k) for k in keys]
    await conn.execute(
        text("""
            update reconciler.work_items
            set generation = generation + 1, due_at = least(due_at, now()), attempts = 0,
                interactive_since = case when :interactive
                                         then coalesce(interactive_since, now())
                                         else interactive_since end
            where (cast(:ids as uuid[]) is null and org_id <> :tools)
               or org_id = any(cast(:ids as uuid[]))
        """),
        {"ids": ids, "tools": TOOLS_ROW, "interactive": lane is Lane.INTERACTIVE},
    )
    await conn.execute(text("select pg_notify('vapi_reconciler', '*')"))


async def due_count(conn: AsyncConnection) -> int:
    """Rows due now and not held: the queue depth."""
    row = await conn.execute(
        text(
            "select count(*) from reconciler.work_items where due_at <= now() "
            "and (lease_expires_at is null or lease_expires_at < now())"
        )
    )
    return int(row.scalar_one())


async def heartbeat(conn: AsyncConnection, *, replica_id: str, live_within: float) -> int:
    """Record this replica alive; returns how many replicas are alive (itself included).
    A replica that was not registered announces itself (``REPLICAS``, at commit): the
    others count it at once instead of at their next heartbeat."""
    await conn.execute(
        text("""
            with up as (
              insert into reconciler.replicas (replica_id) values (:id)
              on conflict (replica_id) do update set heartbeat_at = now()
              returning xmax = 0 as joined
            )
            select pg_notify(:channel, :id) from up where joined
        """),
        {"id": replica_id, "channel": REPLICAS},
    )
    live = await conn.execute(
        text(
            "select count(*) from reconciler.replicas "
            "where heartbeat_at > now() - make_interval(secs => :within)"
        ),
        {"within": live_within},
    )
    return max(int(live.scalar_one()), 1)


async def leave(conn: AsyncConnection, *, replica_id: str) -> None:
    """Unregister, announced (``REPLICAS``) so the others take its share of the rate back."""
    await conn.execute(
        text("""
            with gone as (delete from reconciler.replicas where replica_id = :id returning 1)
            select pg_notify(:channel, :id) from gone
        """),
        {"id": replica_id, "channel": REPLICAS},
    )
