"""``vapi-reconciler doctor``: is this set-up ready for the controller? (CONTRACT section 3)

Exists so an operator taking over a live platform learns everything that is in the way in
one run, each failure with how to fix it, before ``run``, ``reconcile`` or ``plan`` refuse to
start: the config, ``BACKEND_URL``, Postgres, the controller's schema, the platform's tables
as the controller's role sees them (columns, privileges, row-level security), the change
triggers, LISTEN/NOTIFY, and the Vapi key. Ghost rows and security findings are shown for
information; they never fail it.

Must not write anything: not to Postgres (catalog reads, a ``select`` or two and a NOTIFY on
a channel of its own, which nothing listens to but itself), not to Vapi (one ``GET``). Must
never print the Vapi key.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import psycopg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import ConfigError, Settings, load_settings
from controller.daemon.listener import libpq_url
from controller.preflight import shape_fixes, shape_summary
from controller.secret import MissingKeyError, read_master_key, redact, register_secret
from controller.vapi.client import VapiClient
from controller.vapi.errors import UnauthorizedError, VapiError
from controller.vapi.ratelimit import RateLimiter
from desired_state.engine import DatabaseURLError, async_engine
from desired_state.findings import load_findings
from desired_state.revision import schema_problem
from desired_state.shape import NEEDED, PlatformShape, read_shape
from desired_state.unusable import count_unusable_rows

Status = Literal["ok", "fail", "info"]

ANSWER_SECONDS = 10.0
"""A Postgres check without an answer by then has failed."""
NOTIFY_SECONDS = 1.0
"""A NOTIFY that has not come back to its LISTEN by then counts as lost."""
TRIGGERS = (
    ("public.organizations", "vapi_reconciler_org_change"),
    ("public.agents", "vapi_reconciler_agent_write"),
    ("public.agents", "vapi_reconciler_agent_update"),
    ("reconciler.tool_definitions", "vapi_reconciler_tool_change"),
)
"""The change triggers ``desired_state/triggers.sql`` installs, by table."""
AS_OWNER = "as the owner of the platform's tables (DATABASE_URL set to the owner's URL)"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: tuple[str, ...] = ()
    """For a failure: what to do, one line each (SQL where SQL fixes it)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "ok": self.status != "fail",
            "detail": self.detail,
            "fix": list(self.fix),
        }


def passed(checks: list[Check]) -> bool:
    return all(c.status != "fail" for c in checks)


def as_text(checks: list[Check]) -> str:
    """One line per check, then its fix lines."""
    lines = []
    for check in checks:
        lines.append(f"{check.status:<4}  {check.name}: {check.detail}")
        lines += [f"      fix: {line}" for line in check.fix]
    return "\n".join(lines)


async def diagnose(
    config_path: Path,
    *,
    environ: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[Check]:
    """Every check, in the order a set-up is built. ``transport``: Vapi's, for tests."""
    env = dict(environ) if environ is not None else None
    settings, config = _config(config_path, env)
    if settings is None:
        return [config]
    checks = [config, _backend_url(settings)]
    checks += await _database(settings)
    checks.append(await _vapi_key(settings, env, transport))
    informational_last = sorted(checks, key=lambda c: c.status == "info")
    return [Check(c.name, c.status, redact(c.detail), c.fix) for c in informational_last]


def _config(path: Path, env: dict[str, str] | None) -> tuple[Settings | None, Check]:
    name = "config"
    try:
        settings = load_settings(path, environ=env, required=False)
    except ConfigError as exc:
        detail = f"{exc} (the other checks need a valid config)"
        return None, Check(name, "fail", detail, ("correct the file (config.toml documents it)",))
    if not path.is_file():
        detail = f"{path}: no such file (run, reconcile and plan need one)"
        fix = ("give the file with --config PATH; config.toml in the repository documents it",)
        return settings, Check(name, "fail", detail, fix)
    return settings, Check(name, "ok", f"{path} is valid")


def _backend_url(settings: Settings) -> Check:
    name = "BACKEND_URL"
    try:
        return Check(name, "ok", settings.require_backend_url())
    except ConfigError as exc:
        fix = "set BACKEND_URL to the https base URL of the platform's backend"
        return Check(name, "fail", str(exc), (fix,))


async def _database(settings: Settings) -> list[Check]:
    """The checks that need Postgres; only the first when it does not answer."""
    url = settings.database.url
    try:
        engine = async_engine(url, pool_size=1)
    except DatabaseURLError as exc:
        return [Check("postgres", "fail", str(exc), ("set DATABASE_URL",))]
    try:
        reached = await _probe("postgres", lambda: _reach(engine))
        if reached.status == "fail":
            return [reached]
        schema = await _probe("controller schema", lambda: _schema(engine))
        shape: list[PlatformShape] = []
        checks = [
            reached,
            schema,
            await _probe("platform tables", lambda: _platform_tables(engine, shape)),
            await _probe("change triggers", lambda: _triggers(engine)),
            await _probe("LISTEN/NOTIFY", lambda: _listen_notify(url)),
        ]
        if shape and shape[0].ok:
            checks.append(await _probe("unusable rows", lambda: _unusable(engine, shape[0])))
        if schema.status == "ok":
            checks.append(await _probe("security findings", lambda: _findings(engine)))
        return checks
    finally:
        await engine.dispose()


async def _probe(name: str, check: Callable[[], Awaitable[Check]]) -> Check:
    """``check()``, or a failure naming the database error it met."""
    try:
        async with asyncio.timeout(ANSWER_SECONDS):
            return await check()
    except TimeoutError:
        detail = f"no answer within {ANSWER_SECONDS:g}s"
    except DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    except (psycopg.Error, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    fix = (
        "check DATABASE_URL (host, port, database, user, password) and that the server "
        "accepts this connection"
        if name == "postgres"
        else "grant the controller's role what the error names "
        "(deploy/postgres/controller-role.sql grants all it needs)"
    )
    return Check(name, "fail", detail, (fix,))


async def _reach(engine: AsyncEngine) -> Check:
    async with engine.connect() as conn:
        row = (await conn.execute(text("select current_user, current_database()"))).one()
        version = (await conn.execute(text("show server_version"))).scalar_one()
    return Check("postgres", "ok", f"reachable as {row[0]} in {row[1]} (PostgreSQL {version})")


async def _schema(engine: AsyncEngine) -> Check:
    async with engine.connect() as conn:
        problem = await schema_problem(conn)
    if problem:
        return Check("controller schema", "fail", problem, (f"vapi-reconciler migrate {AS_OWNER}",))
    return Check("controller schema", "ok", "at the revision this version needs")


async def _platform_tables(engine: AsyncEngine, found: list[PlatformShape]) -> Check:
    """Columns, privileges and row-level security as the configured role sees them; the shape
    is kept in ``found`` for the checks that need a full view."""
    async with engine.connect() as conn:
        shape = await read_shape(conn)
    found.append(shape)
    name = "platform tables"
    if not shape.ok:
        return Check(name, "fail", shape_summary(shape), tuple(shape_fixes(shape)))
    absent = [
        f"{table}.{column.name}"
        for table, columns in NEEDED.items()
        for column in columns
        if column.optional and not shape.has(table, column.name)
    ]
    detail = f"role {shape.role} sees every row and column it needs of {', '.join(NEEDED)}"
    if absent:
        detail += f" (optional, absent: {', '.join(absent)})"
    return Check(name, "ok", detail)


_TRIGGERS = text("""
    select n.nspname || '.' || c.relname as table_name, t.tgname as name
    from pg_trigger t
    join pg_class c on c.oid = t.tgrelid
    join pg_namespace n on n.oid = c.relnamespace
    where not t.tgisinternal and t.tgenabled <> 'D' and t.tgname = any(cast(:names as text[]))
""")


async def _triggers(engine: AsyncEngine) -> Check:
    async with engine.connect() as conn:
        rows = await conn.execute(_TRIGGERS, {"names": [name for _, name in TRIGGERS]})
        found = {(row.table_name, row.name) for row in rows}
    missing = [f"{name} on {table}" for table, name in TRIGGERS if (table, name) not in found]
    if not missing:
        return Check("change triggers", "ok", f"all {len(TRIGGERS)} installed and enabled")
    detail = (
        f"missing or disabled: {', '.join(missing)}; a change to the platform's tables is "
        "seen only at its organization's next resync (a migrate run before the platform's "
        "tables existed installs none)"
    )
    return Check("change triggers", "fail", detail, (f"re-run vapi-reconciler migrate {AS_OWNER}",))


async def _listen_notify(url: str) -> Check:
    """LISTEN on a channel of its own, NOTIFY it from another connection, wait for it."""
    name = "LISTEN/NOTIFY"
    channel = f"vapi_reconciler_doctor_{uuid.uuid4().hex[:12]}"
    address = libpq_url(url)
    async with await psycopg.AsyncConnection.connect(address, autocommit=True) as listener:
        await listener.execute(f"LISTEN {channel}")
        async with await psycopg.AsyncConnection.connect(address, autocommit=True) as sender:
            sent = time.monotonic()
            await sender.execute("select pg_notify(%s, 'doctor')", (channel,))
        async for _ in listener.notifies(timeout=NOTIFY_SECONDS, stop_after=1):
            return Check(name, "ok", f"a notification arrived in {time.monotonic() - sent:.3f}s")
    detail = (
        f"a NOTIFY did not reach its LISTEN within {NOTIFY_SECONDS:g}s: a transaction-mode "
        "pooler (such as Supabase's on port 6543) breaks LISTEN; the daemon falls back to "
        "polling (idle_poll_seconds), so changes arrive later but still arrive"
    )
    fix = "point DATABASE_URL at the session pooler (Supabase: port 5432) or a direct connection"
    return Check(name, "fail", detail, (fix,))


async def _unusable(engine: AsyncEngine, shape: PlatformShape) -> Check:
    async with engine.connect() as conn:
        counts = await count_unusable_rows(conn, shape=shape)
    found = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    detail = f"skipped and reported, never blocking: {found}" if found else "none"
    return Check("unusable rows", "info", detail)


async def _findings(engine: AsyncEngine) -> Check:
    async with engine.connect() as conn:
        findings = await load_findings(conn)
    detail = (
        f"{len(findings)} Vapi credential(s) stored in integrations.config, as the last run "
        "or reconcile recorded them (where: vapi-reconciler status)"
        if findings
        else "none recorded by the last run or reconcile"
    )
    return Check("security findings", "info", detail)


async def _vapi_key(
    settings: Settings, env: dict[str, str] | None, transport: httpx.AsyncBaseTransport | None
) -> Check:
    """The cheapest call that needs the key: GET /assistant?limit=1."""
    name = "Vapi key"
    set_it = "set VAPI_PRIVATE_KEY (or VAPI_PRIVATE_KEY_FILE) to the account's private key"
    try:
        key = read_master_key(env)
    except MissingKeyError as exc:
        return Check(name, "fail", str(exc), (set_it,))
    register_secret(key)
    vapi = settings.vapi
    client = VapiClient(
        base_url=vapi.base_url,
        key=key,
        limiter=RateLimiter(rate=vapi.rate_limit_per_second, burst=vapi.burst),
        transport=transport,
        timeout_seconds=vapi.timeout_seconds,
        max_attempts=2,
    )
    try:
        # No public verb lists a single page; this is the one request the client makes.
        await client._call("GET", "/assistant", params={"limit": 1})
    except UnauthorizedError as exc:
        return Check(name, "fail", f"rejected by {vapi.base_url}: {exc}", (set_it,))
    except VapiError as exc:
        fix = "check VAPI_BASE_URL and that this host reaches it"
        return Check(name, "fail", f"{vapi.base_url} did not answer: {exc}", (fix,))
    finally:
        await client.aclose()
    return Check(name, "ok", f"accepted by {vapi.base_url}")
