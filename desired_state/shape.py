"""The platform's tables as the controller's role finds them, read once from the catalog.

Exists because the controller runs on the platform's database as it is (CONTRACT section 1,
"The live platform"): optional columns may be absent, a column may have another type, a
privilege may be missing, row-level security may hide rows from the controller's role. The
loader and the writers build their statements from a ``PlatformShape``; a shape with
``problems`` means the controller cannot see or write the whole desired state, and each
problem carries the statement that fixes it.

Must not change anything (it reads ``pg_catalog`` only) and must not decide what to do about
a problem: callers refuse to act (``PlatformShapeError``) rather than act on part of the state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Command = Literal["select", "insert", "update", "delete"]

_TEXT = frozenset({"text", "character varying", "character"})
_INTEGER = frozenset({"integer", "smallint", "bigint"})
_NUMBER = _INTEGER | {"numeric", "double precision", "real"}
_UUID = frozenset({"uuid"})
_BOOLEAN = frozenset({"boolean"})
_JSON = frozenset({"jsonb", "json"})


@dataclass(frozen=True)
class Column:
    """A platform column the controller uses: the types it can read, the one a fix adds."""

    name: str
    types: frozenset[str]
    sql_type: str
    optional: bool = False


NEEDED: Mapping[str, tuple[Column, ...]] = {
    "organizations": (Column("id", _UUID, "uuid"), Column("status", _TEXT, "text")),
    "agents": (
        Column("id", _UUID, "uuid"),
        Column("org_id", _UUID, "uuid"),
        Column("role", _TEXT, "text"),
        Column("name", _TEXT, "text"),
        Column("system_prompt", _TEXT, "text"),
        Column("first_message", _TEXT, "text"),
        Column("voice", _TEXT, "text"),
        Column("voice_provider", _TEXT, "text"),
        Column("language", _TEXT, "text"),
        Column("model", _TEXT, "text"),
        Column("temperature", _NUMBER, "numeric"),
        Column("max_tokens", _INTEGER, "integer"),
        Column("max_call_duration", _INTEGER, "integer"),
        Column("vapi_assistant_id", _TEXT, "text"),
        Column("active", _BOOLEAN, "boolean"),
        Column("voice_stability", _NUMBER, "numeric", optional=True),
        Column("voice_similarity_boost", _NUMBER, "numeric", optional=True),
        Column("vapi_phone_number_id", _TEXT, "text", optional=True),
        Column("is_active", _BOOLEAN, "boolean", optional=True),  # legacy flag, reported only
    ),
    "org_tools": (
        Column("org_id", _UUID, "uuid"),
        Column("tool_name", _TEXT, "varchar(255)"),
        Column("vapi_tool_id", _TEXT, "varchar(255)"),
        Column("definition_hash", _TEXT, "varchar(64)", optional=True),
    ),
    "integrations": (
        Column("id", _UUID, "uuid"),
        Column("org_id", _UUID, "uuid"),
        Column("provider", _TEXT, "text"),
        Column("config", _JSON, "jsonb"),
    ),
}
"""Every platform column the controller reads or writes, by table."""

COMMANDS: Mapping[str, tuple[Command, ...]] = {
    "organizations": ("select",),
    "agents": ("select", "update"),
    "integrations": ("select",),
    "org_tools": ("select", "insert", "update", "delete"),
}
"""What the controller does to each platform table (``agents``: ``vapi_assistant_id`` only)."""

_POLICY_CMD = {"select": "r", "insert": "a", "update": "w", "delete": "d"}


class Problem(NamedTuple):
    """Something that keeps the controller from seeing or writing the whole desired state."""

    table: str
    what: str
    fix_sql: str


@dataclass(frozen=True)
class PlatformShape:
    role: str
    columns: Mapping[str, frozenset[str]]
    """Per table, the needed columns that exist with a usable type (optional ones included)."""
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def has(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, frozenset())

    def describe(self) -> str:
        """One line per problem: what is missing and the statement that grants it."""
        return "\n".join(f"{p.table}: {p.what}; fix: {p.fix_sql}" for p in self.problems)


class PlatformShapeError(RuntimeError):
    """The controller's role cannot see or write the whole desired state."""

    def __init__(self, shape: PlatformShape) -> None:
        super().__init__(
            f"the platform's tables don't let role {shape.role} see the whole desired state; "
            f"refusing to act:\n{shape.describe()}"
        )
        self.shape = shape


_COLUMNS = text("""
    select c.relname as table_name, a.attname as column_name,
           format_type(a.atttypid, null) as type_name,
           has_column_privilege(c.oid, a.attnum, 'SELECT') as can_select,
           has_column_privilege(c.oid, a.attnum, 'UPDATE') as can_update
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    where c.relname = any(cast(:tables as text[])) and c.relkind in ('r', 'p')
""")

_TABLES = text("""
    select c.relname as table_name,
           c.relrowsecurity and (c.relforcerowsecurity
             or not pg_has_role(current_user, c.relowner, 'USAGE')) as rls_applies,
           has_table_privilege(c.oid, 'INSERT') as can_insert,
           has_table_privilege(c.oid, 'UPDATE') as can_update,
           has_table_privilege(c.oid, 'DELETE') as can_delete,
           s.seq as id_sequence,
           s.seq is null or has_sequence_privilege(s.seq, 'USAGE') as can_use_sequence
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
    left join pg_attribute id on id.attrelid = c.oid and id.attname = 'id'
    cross join lateral (select case when id.attnum is not null then
      pg_get_serial_sequence(format('public.%I', c.relname), 'id') end as seq) s
    where c.relname = any(cast(:tables as text[])) and c.relkind in ('r', 'p')
""")

_ROLE = text("""
    select current_user as role, rolsuper or rolbypassrls as bypasses_rls
    from pg_roles where rolname = current_user
""")

_POLICIES = text("""
    select c.relname as table_name, p.polname as name, p.polcmd as cmd,
           p.polpermissive as permissive,
           coalesce(pg_get_expr(p.polqual, p.polrelid), 'true') = 'true' as sees_all,
           coalesce(pg_get_expr(p.polwithcheck, p.polrelid),
                    pg_get_expr(p.polqual, p.polrelid), 'true') = 'true' as writes_all
    from pg_policy p
    join pg_class c on c.oid = p.polrelid
    join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
    where c.relname = any(cast(:tables as text[]))
      and (0 = any(p.polroles) or exists (
        select 1 from unnest(p.polroles) r
        where r <> 0 and pg_has_role(current_user, r, 'USAGE')))
""")


@dataclass(frozen=True)
class _Found:
    """One platform table as the catalog has it, for the current role."""

    columns: Mapping[str, tuple[str, bool, bool]]
    """Column -> (type, may select, may update)."""
    rls_applies: bool
    may: frozenset[Command]
    """Of insert, update and delete, what the role holds on the whole table."""
    sequence: str | None
    may_use_sequence: bool


@dataclass(frozen=True)
class _Policy:
    name: str
    cmd: str
    permissive: bool
    sees_all: bool
    writes_all: bool

    def covers(self, command: Command) -> bool:
        return self.cmd in ("*", _POLICY_CMD[command])

    def allows_all(self, command: Command) -> bool:
        """Every row, for this command: ``using (true)`` (and ``with check (true)``)."""
        if command == "insert":
            return self.writes_all
        if command == "update":
            return self.sees_all and self.writes_all
        return self.sees_all


_shapes: dict[str, PlatformShape] = {}
_reading: dict[str, asyncio.Future[PlatformShape]] = {}
"""The read under way per database and role, for callers that ask while it runs."""


async def shape_of(conn: AsyncConnection) -> PlatformShape:
    """The shape for this connection's database and role, read on first use and kept for the
    process. A shape with problems is not kept: the next call sees the fix."""
    key = _key(conn.engine)
    shape = _shapes.get(key)
    if shape is None:
        shape = await _read_once(key, conn)
        if shape.ok:
            _shapes[key] = shape
    return shape


def _key(engine: AsyncEngine) -> str:
    """Shapes are kept per database and role: the URL, without its password."""
    return engine.url.render_as_string(hide_password=True)


async def engine_shape(engine: AsyncEngine) -> PlatformShape:
    """``usable_shape`` of ``engine``'s database and role, taken from what ``shape_of`` keeps
    without a connection once it is known (a group commit asks for it every time)."""
    found = _shapes.get(_key(engine))
    if found is None:
        async with engine.connect() as conn:
            found = await shape_of(conn)
    if not found.ok:
        raise PlatformShapeError(found)
    return found


async def _read_once(key: str, conn: AsyncConnection) -> PlatformShape:
    """One read for the callers that ask at once: a command's start asks three times together
    (the set-up check, the loader and the observer, each on its own connection), and the
    observer's first Vapi request waits for its answer (issue 17: the first write within 0.8 s
    of process start). A caller that finds a read under way waits for it; when that read
    fails, the caller reads on its own connection (the reader has the error to report)."""
    loop = asyncio.get_running_loop()
    reading = _reading.get(key)
    if reading is not None and reading.get_loop() is loop:
        try:
            return await asyncio.shield(reading)
        except asyncio.CancelledError:
            if not reading.cancelled() or _cancelling():
                raise
    reading = _reading[key] = loop.create_future()
    try:
        shape = await read_shape(conn)
    except BaseException:
        reading.cancel()
        raise
    finally:
        if _reading.get(key) is reading:
            del _reading[key]
    reading.set_result(shape)
    return shape


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def usable_shape(conn: AsyncConnection, shape: PlatformShape | None = None) -> PlatformShape:
    """``shape`` (default: this connection's), or ``PlatformShapeError`` when it has problems."""
    found = shape if shape is not None else await shape_of(conn)
    if not found.ok:
        raise PlatformShapeError(found)
    return found


async def read_shape(conn: AsyncConnection) -> PlatformShape:
    """Read the platform's tables as the connection's role sees them (four catalog queries)."""
    names = list(NEEDED)
    role_row = (await conn.execute(_ROLE)).one()
    role, bypasses_rls = str(role_row.role), bool(role_row.bypasses_rls)
    columns: dict[str, dict[str, tuple[str, bool, bool]]] = {}
    for row in await conn.execute(_COLUMNS, {"tables": names}):
        columns.setdefault(row.table_name, {})[row.column_name] = (
            row.type_name,
            row.can_select,
            row.can_update,
        )
    found = {
        row.table_name: _Found(
            columns=columns.get(row.table_name, {}),
            rls_applies=bool(row.rls_applies) and not bypasses_rls,
            may=frozenset(c for c in ("insert", "update", "delete") if getattr(row, f"can_{c}")),
            sequence=row.id_sequence,
            may_use_sequence=bool(row.can_use_sequence),
        )
        for row in await conn.execute(_TABLES, {"tables": names})
    }
    policies: dict[str, list[_Policy]] = {}
    for row in await conn.execute(_POLICIES, {"tables": names}):
        policies.setdefault(row.table_name, []).append(
            _Policy(row.name, row.cmd, row.permissive, row.sees_all, row.writes_all)
        )
    problems: list[Problem] = []
    usable: dict[str, frozenset[str]] = {}
    for table in NEEDED:
        here = found.get(table)
        if here is None:
            problems.append(
                Problem(
                    table,
                    f"table public.{table} does not exist",
                    "-- run: vapi-reconciler migrate --with-platform-schema",
                )
            )
            continue
        usable[table] = frozenset(
            c.name for c in NEEDED[table] if here.columns.get(c.name, ("",))[0] in c.types
        )
        problems += _column_problems(table, here, role)
        problems += _privilege_problems(table, here, role)
        if here.rls_applies:
            problems += _policy_problems(table, policies.get(table, []), role)
    return PlatformShape(role=role, columns=usable, problems=tuple(problems))


def _column_problems(table: str, found: _Found, role: str) -> list[Problem]:
    problems = []
    for column in NEEDED[table]:
        here = found.columns.get(column.name)
        if here is None:
            if not column.optional:
                problems.append(
                    Problem(
                        table,
                        f"column {column.name} is missing",
                        f"alter table public.{table} add column {column.name} {column.sql_type};",
                    )
                )
        elif here[0] not in column.types:
            problems.append(
                Problem(
                    table,
                    f"column {column.name} is {here[0]}, not {column.sql_type}",
                    f"alter table public.{table} alter column {column.name} "
                    f"type {column.sql_type} using {column.name}::{column.sql_type};",
                )
            )
    unreadable = sorted(c for c in found.columns if c in _names(table) and not found.columns[c][1])
    if unreadable:
        problems.append(
            Problem(
                table,
                f"role {role} may not read {', '.join(unreadable)}",
                f'grant select on public.{table} to "{role}";',
            )
        )
    return problems


def _names(table: str) -> frozenset[str]:
    return frozenset(c.name for c in NEEDED[table])


def _privilege_problems(table: str, found: _Found, role: str) -> list[Problem]:
    problems = []
    link = found.columns.get("vapi_assistant_id")
    if table == "agents" and link is not None and not link[2]:
        problems.append(
            Problem(
                table,
                f"role {role} may not write agents.vapi_assistant_id",
                f'grant update (vapi_assistant_id) on public.agents to "{role}";',
            )
        )
    if table == "org_tools":
        missing = [c for c in COMMANDS[table] if c != "select" and c not in found.may]
        if missing:
            problems.append(
                Problem(
                    table,
                    f"role {role} may not {', '.join(missing)} rows",
                    f'grant {", ".join(missing)} on public.org_tools to "{role}";',
                )
            )
        if not found.may_use_sequence:
            problems.append(
                Problem(
                    table,
                    f"role {role} may not use sequence {found.sequence}",
                    f'grant usage on sequence {found.sequence} to "{role}";',
                )
            )
    return problems


def _policy_problems(table: str, policies: list[_Policy], role: str) -> list[Problem]:
    """Row-level security is on for this role: each command needs a permissive policy that
    lets it reach every row, and no restrictive policy may narrow it."""
    problems = []
    for command in COMMANDS[table]:
        applying = [p for p in policies if p.covers(command)]
        if not any(p.permissive and p.allows_all(command) for p in applying):
            problems.append(
                Problem(
                    table,
                    f"row-level security hides rows from role {role} for {command.upper()}",
                    policy_sql(table, command, role),
                )
            )
        for narrowing in (p for p in applying if not p.permissive and not p.allows_all(command)):
            problems.append(
                Problem(
                    table,
                    f"restrictive policy {narrowing.name} hides rows from role {role} "
                    f"for {command.upper()}",
                    f'alter policy "{narrowing.name}" on public.{table} to <the roles it is '
                    f'meant for, not "{role}">;',
                )
            )
    return problems


def policy_sql(table: str, command: Command, role: str) -> str:
    """The policy that lets ``role`` reach every row of ``table`` for ``command``; named as
    deploy/postgres/controller-role.sql names it."""
    using = "" if command == "insert" else " using (true)"
    check = " with check (true)" if command in ("insert", "update") else ""
    return (
        f'create policy "{role}_{command}" on public.{table} for {command} '
        f'to "{role}"{using}{check};'
    )
