"""Record what the controller did: the registry of Vapi objects (intent before a create,
baseline after a write), ``agents.vapi_assistant_id``, ``org_tools``, status, audit (and its
retention), and what each daemon reports about itself.

Every function runs in the caller's transaction and commits nothing itself (``trim_audit``
aside: it commits per batch, so it takes its own connection). Nothing here redacts: callers
hand over values already fit to store (``controller.secret.scrub``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
from sqlalchemy import and_, delete, or_, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.core.outcome import State
from desired_state.direct import DirectConnection, json_rows, uuid_array
from desired_state.shape import PlatformShape
from desired_state.tables import replicas, vapi_objects

Kind = Literal["assistant", "tool"]
AuditOutcome = Literal["ok", "error", "unknown"]
AuditCause = Literal["desired", "drift", "adoption", "relink", "prune", "duplicate", "config"]
"""Why a write was made: the desired rows changed, Vapi was edited outside the controller
(drift), an existing object was taken over (adoption), an agent or a phone number was
pointed at its assistant (relink), nothing desires the object any more (prune), or it was a
late duplicate of the assistant Postgres links (duplicate), or only the render settings
changed (config)."""


_RECORD_INTENTS = """
    insert into reconciler.vapi_objects as o (kind, owner_key, org_id, state, intent_at)
    select kind, owner_key, org_id, 'creating', now()
    from jsonb_to_recordset(cast(%(rows)s as jsonb)) as i(kind text, owner_key text, org_id uuid)
    on conflict on constraint vapi_objects_kind_owner_key_key do update
    set state = 'creating', intent_at = now(), updated_at = now()
    returning kind, owner_key, intent_at
"""


@dataclass(frozen=True)
class Intent:
    """A POST about to be sent that cannot be repeated safely: the object it creates."""

    kind: Kind
    owner_key: str
    org_id: UUID | None


async def record_intents(
    conn: DirectConnection, intents: Collection[Intent]
) -> dict[tuple[Kind, str], datetime]:
    """Before POSTs that cannot be repeated safely: say each may have happened (one
    statement for all of them; the next pass confirms what became of each). Returns when
    each was recorded, by (kind, owner key): ``drop_intents`` drops an intent only while it
    is still that one."""
    if not intents:
        return {}
    unique = list({(i.kind, i.owner_key): i for i in intents}.values())
    rows = await conn.execute(
        _RECORD_INTENTS,
        {
            "rows": json_rows(
                {"kind": i.kind, "owner_key": i.owner_key, "org_id": i.org_id} for i in unique
            )
        },
    )
    return {(kind, owner_key): at for kind, owner_key, at in await rows.fetchall()}


async def drop_intents(
    conn: AsyncConnection, recorded: Mapping[tuple[Kind, str], datetime]
) -> None:
    """The POSTs were refused or never sent: back to what the registry held before. An
    intent recorded again since (by a replica that took the organization over) stays."""
    if not recorded:
        return
    mine = and_(
        or_(
            *(
                and_(
                    vapi_objects.c.kind == kind,
                    vapi_objects.c.owner_key == owner_key,
                    vapi_objects.c.intent_at == at,
                )
                for (kind, owner_key), at in recorded.items()
            )
        ),
        vapi_objects.c.state == "creating",
    )
    await conn.execute(delete(vapi_objects).where(mine, vapi_objects.c.vapi_id.is_(None)))
    await conn.execute(update(vapi_objects).where(mine).values(state="present"))


@dataclass(frozen=True)
class WriteRecord:
    """What one Vapi write leaves in Postgres: the object's id and baseline, the agent it
    is linked to (assistants), its audit row."""

    kind: Kind
    owner_key: str
    org_id: UUID | None
    vapi_id: str
    desired_hash: str | None = None
    observed_hash: str | None = None
    row_hash: str | None = None
    settings_hash: str | None = None
    agent_id: UUID | None = None
    audit: AuditEntry | None = None


async def record_write(conn: DirectConnection, write: WriteRecord, fence: Fence | None) -> None:
    """One statement (``reconciler.record_write``, migration 0010): link the agent, check
    the fence, record the object and its audit row, all or nothing. Fenced out, nothing is
    written and ``FencedOutError`` is raised. Runs in autocommit or the caller's
    transaction alike."""
    landed = await (await _send_writes(conn, [(write, fence)])).fetchone()
    if not (landed and landed[0]):
        assert fence is not None
        raise FencedOutError(f"work row {fence.row}: fencing token {fence.token} is stale")


_RECORD_WRITES = """
    select reconciler.record_write(
             w.kind, w.owner_key, w.org_id, w.vapi_id, w.desired_hash, w.observed_hash,
             w.row_hash, w.settings_hash, w.agent_id, w.fence_row, w.fence_token, w.audit)
    from rows from (
           jsonb_to_recordset(cast(%(writes)s as jsonb))
           as (kind text, owner_key text, org_id uuid, vapi_id text, desired_hash text,
               observed_hash text, row_hash text, settings_hash text, agent_id uuid,
               fence_row uuid, fence_token bigint, audit jsonb))
         with ordinality as w
    order by w.ordinality
"""
"""The writes as one JSON document: an array parameter would be escaped element by element
in Python (half a millisecond for each audit row of a create)."""


async def record_writes(
    conn: DirectConnection, writes: Sequence[tuple[WriteRecord, Fence | None]]
) -> None:
    """Many writes' records (an organization's visit keeps them until its completion), in
    two statements whose results are never read (in a pipeline, no round trip of their
    own). The agents' links and the registry, in order (a later record of the same object
    wins), each under its own fence: one fenced out leaves nothing, silently (the caller
    learns of the fence from the claim's completion in the same transaction). The audit
    rows whatever the fence, each dated when its write was made: they say what was done in
    Vapi, which another replica's takeover does not undo."""
    if writes:
        await _send_writes(conn, writes, audits=False)
        await write_audit(conn, [w.audit for w, _ in writes if w.audit is not None])


async def _send_writes(
    conn: DirectConnection,
    writes: Sequence[tuple[WriteRecord, Fence | None]],
    *,
    audits: bool = True,
) -> psycopg.AsyncCursor[tuple[Any, ...]]:
    rows = [
        {
            "kind": w.kind,
            "owner_key": w.owner_key,
            "org_id": w.org_id,
            "vapi_id": w.vapi_id,
            "desired_hash": w.desired_hash,
            "observed_hash": w.observed_hash,
            "row_hash": w.row_hash,
            "settings_hash": w.settings_hash,
            "agent_id": w.agent_id,
            "fence_row": fence.row if fence else None,
            "fence_token": fence.token if fence else None,
            "audit": _audit_row(w.audit) if audits and w.audit else None,
        }
        for w, fence in writes
    ]
    return await conn.execute(_RECORD_WRITES, {"writes": json_rows(rows)})


async def forget(conn: DirectConnection, *, vapi_id: str) -> None:
    await conn.execute(
        "delete from reconciler.vapi_objects where vapi_id = %(vapi_id)s", {"vapi_id": vapi_id}
    )


@dataclass(frozen=True)
class Fence:
    """A claim's work row and fencing token: a write under it lands only while it holds."""

    row: UUID
    token: int


class FencedOutError(Exception):
    """The claim's fencing token moved on: another replica owns the organization now."""


async def announce_gone(conn: DirectConnection, *, resource: str, vapi_id: str) -> None:
    """Tell every replica, at commit, that this object was deleted in Vapi (a hint on
    ``vapi_reconciler_gone``; a replica that misses it learns at its next listing)."""
    await conn.execute(
        "select pg_notify('vapi_reconciler_gone', %(payload)s)",
        {"payload": f"{resource}:{vapi_id}"},
    )


@dataclass(frozen=True)
class ToolLink:
    tool_name: str
    vapi_tool_id: str
    definition_hash: str | None


def _upsert_org_tools(hashed: bool) -> str:
    """``org_tools`` rows upserted, ``definition_hash`` only where the platform has it."""
    return f"""
        insert into public.org_tools as o
          (org_id, tool_name, vapi_tool_id, {"definition_hash, " if hashed else ""}
           created_at, updated_at)
        select l.org_id, l.tool_name, l.vapi_tool_id, {"l.definition_hash, " if hashed else ""}
               now(), now()
        from jsonb_to_recordset(cast(%(links)s as jsonb))
             as l(org_id uuid, tool_name text, vapi_tool_id text, definition_hash text)
        on conflict (org_id, tool_name) do update
        set vapi_tool_id = excluded.vapi_tool_id, updated_at = now()
            {", definition_hash = excluded.definition_hash" if hashed else ""}
        where o.vapi_tool_id is distinct from excluded.vapi_tool_id
            {"or o.definition_hash is distinct from excluded.definition_hash" if hashed else ""}
    """


_UPSERT_ORG_TOOLS = {hashed: _upsert_org_tools(hashed) for hashed in (False, True)}
"""Both forms built once (every group commit writes links)."""
_DELETE_ORG_TOOLS = """
    delete from public.org_tools o
    where o.org_id = any(cast(%(all_orgs)s as uuid[]))
      and (o.org_id, o.tool_name) not in (
        select l.org_id, l.tool_name
        from jsonb_to_recordset(cast(%(links)s as jsonb)) as l(org_id uuid, tool_name text))
"""


async def replace_org_tools(
    conn: DirectConnection,
    links_by_org: Mapping[UUID, Mapping[str, ToolLink]],
    *,
    shape: PlatformShape,
) -> None:
    """Make ``org_tools`` hold exactly the given links for each organization named: two
    statements for any number of organizations; rows already right are left untouched.
    ``definition_hash`` is stored and compared only where the platform has the column;
    ``shape`` is a usable one (``desired_state.shape.engine_shape``)."""
    if not links_by_org:
        return
    links = json_rows(
        {
            "org_id": org_id,
            "tool_name": link.tool_name,
            "vapi_tool_id": link.vapi_tool_id,
            "definition_hash": link.definition_hash,
        }
        for org_id, found in links_by_org.items()
        for link in found.values()
    )
    await conn.execute(
        _UPSERT_ORG_TOOLS[shape.has("org_tools", "definition_hash")], {"links": links}
    )
    await conn.execute(_DELETE_ORG_TOOLS, {"all_orgs": uuid_array(links_by_org), "links": links})


async def forget_statuses(conn: DirectConnection, org_ids: Collection[UUID]) -> None:
    if org_ids:
        await conn.execute(
            "delete from reconciler.org_status where org_id = any(cast(%(ids)s as uuid[]))",
            {"ids": uuid_array(org_ids)},
        )


@dataclass(frozen=True)
class StatusRow:
    org_id: UUID
    state: State
    message: str
    reason: str | None = None
    failed: bool = False


_UPSERT_STATUSES = """
    insert into reconciler.org_status as s
      (org_id, state, message, reason, updated_at, last_synced_at,
       unreconciled_since, consecutive_failures)
    select r.org_id, r.state, r.message, r.reason, now(),
           case when r.state = 'synced' then now() end,
           case when r.state in ('synced', 'paused') then null else now() end,
           case when r.failed then 1 else 0 end
    from jsonb_to_recordset(cast(%(rows)s as jsonb))
         as r(org_id uuid, state text, message text, reason text, failed boolean)
    on conflict (org_id) do update
    set state = excluded.state, message = excluded.message, reason = excluded.reason,
        updated_at = now(),
        last_synced_at = coalesce(excluded.last_synced_at, s.last_synced_at),
        unreconciled_since = case when excluded.state in ('synced', 'paused') then null
                                  else coalesce(s.unreconciled_since, now()) end,
        consecutive_failures = case when excluded.consecutive_failures = 1
                                    then s.consecutive_failures + 1 else 0 end
"""
_WRITE_STATUSES_ONE_SHOT = _UPSERT_STATUSES + "where excluded.state <> 'paused'"


async def write_statuses(
    conn: DirectConnection, rows: Sequence[StatusRow], *, one_shot: bool = False
) -> None:
    """Upsert status rows in one statement. ``unreconciled_since`` keeps its first value
    until the organization is synced or paused; ``consecutive_failures`` counts failed
    attempts; ``last_synced_at`` moves only on a sync.

    ``one_shot``: the rows come from a command run once (``reconcile``) with its own config
    file. Its ``paused`` says only that this command wrote nothing: it never replaces a row the
    daemon wrote (a new organization still gets one)."""
    latest = {row.org_id: row for row in rows}  # one upsert may touch a row only once
    if not latest:
        return
    await conn.execute(
        _WRITE_STATUSES_ONE_SHOT if one_shot else _UPSERT_STATUSES,
        {
            "rows": json_rows(
                {
                    "org_id": row.org_id,
                    "state": row.state,
                    "message": row.message,
                    "reason": row.reason,
                    "failed": row.failed,
                }
                for row in latest.values()
            )
        },
    )


@dataclass(frozen=True)
class FieldWrite:
    """One managed field a write changed, its values already redacted."""

    path: str
    before: Any
    after: Any


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
    agent_id: UUID | None = None
    cause: AuditCause | None = None
    changes: Sequence[FieldWrite] = ()
    duration_ms: int | None = None
    made_at: float = field(default_factory=time.monotonic)
    """When the entry was made (``time.monotonic``): a row written later, with its
    organization's completion, is dated back by its age (Postgres' clock, not ours)."""


_WRITE_AUDIT = """
    insert into reconciler.audit_log
      (at, reconcile_id, org_id, action, vapi_id, method, path, status_code, outcome, detail,
       agent_id, cause, changes, duration_ms)
    select now() - make_interval(secs => coalesce(cast(r.row ->> 'age_s' as float8), 0)),
           a.reconcile_id, a.org_id, a.action, a.vapi_id, a.method, a.path, a.status_code,
           a.outcome, coalesce(a.detail, '{}'), a.agent_id, a.cause, coalesce(a.changes, '[]'),
           a.duration_ms
    from jsonb_array_elements(cast(%(rows)s as jsonb)) with ordinality as r(row, n)
         cross join lateral jsonb_populate_record(null::reconciler.audit_log, r.row) as a
    order by r.n
"""
"""The audit rows as one JSON document, as ``reconciler.record_write`` takes its own."""


async def write_audit(conn: DirectConnection, entries: list[AuditEntry]) -> None:
    if entries:
        now = time.monotonic()
        rows = json_rows({**_audit_row(e), "age_s": max(now - e.made_at, 0.0)} for e in entries)
        await conn.execute(_WRITE_AUDIT, {"rows": rows})


def _audit_row(e: AuditEntry) -> dict[str, Any]:
    return {
        "reconcile_id": e.reconcile_id,
        "org_id": e.org_id,
        "action": e.action,
        "vapi_id": e.vapi_id,
        "method": e.method,
        "path": e.path,
        "status_code": e.status_code,
        "outcome": e.outcome,
        "detail": dict(e.detail),
        "agent_id": e.agent_id,
        "cause": e.cause,
        "changes": [{"path": c.path, "before": c.before, "after": c.after} for c in e.changes],
        "duration_ms": e.duration_ms,
    }


async def trim_audit(
    conn: AsyncConnection, *, keep_days: int, batch: int = 5000, max_batches: int = 100
) -> int:
    """Delete audit rows older than ``keep_days``, ``batch`` rows per transaction (short
    locks, bounded WAL), at most ``max_batches`` per call; returns how many went. The next
    call goes on where this one stopped. ``conn`` must not be in a transaction."""
    removed = 0
    for _ in range(max_batches):
        async with conn.begin():
            result = await conn.execute(
                text("""
                    delete from reconciler.audit_log where id in (
                      select id from reconciler.audit_log
                      where at < now() - make_interval(days => :days)
                      limit :batch)
                """),
                {"days": keep_days, "batch": batch},
            )
        removed += result.rowcount
        if result.rowcount < batch:
            break
    return removed


async def report_replica(
    conn: AsyncConnection, *, replica_id: str, version: str, mode: str, paused: bool
) -> None:
    """What a daemon runs with, next to its heartbeat, for ``status`` to show."""
    await conn.execute(
        update(replicas)
        .where(replicas.c.replica_id == replica_id)
        .values(version=version, mode=mode, paused=paused)
    )
