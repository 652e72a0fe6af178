"""The hot path's own connections: psycopg's, without SQLAlchemy in between.

Why: every Vapi write leaves a few statements behind it (the intent, the record, its share of
the group commit). Through SQLAlchemy each cost about 0.4 to 0.5 ms of CPU (the pool checkout,
the isolation level set and reset, statement compilation and result wrapping); on a psycopg
connection of its own, about 0.1 (``python -m bench.statements``). At 100 writes a second that
was most of the daemon's CPU.

What goes here: the statements run once or more per Vapi write or per claimed organization:
``desired_state.records``' intent, write record, audit rows, statuses and ``org_tools``;
``desired_state.queue``'s claim and completion; the desired-state load
(``desired_state.load``). The claim and the load run in a SQLAlchemy session's own
transaction, on its psycopg connection (``driver``), from statements compiled once
(``compiled``). Every other query keeps SQLAlchemy: rare enough not to matter, and easier
to read there.

Connections are autocommit (a single statement is its own transaction, one round trip; a
group commit opens ``conn.transaction()``), made on first use and kept up to ``size``; one
that broke (Postgres restarted, a network cut) is dropped when it is handed back, so the
caller's retry gets a fresh one, as with the SQLAlchemy pool (no pre-ping: see
``desired_state.engine.async_engine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID
from weakref import WeakKeyDictionary

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement

from desired_state.engine import IDLE_IN_TRANSACTION_SECONDS

DirectConnection = psycopg.AsyncConnection[tuple[Any, ...]]

DATABASE_ERRORS = (DBAPIError, psycopg.Error)
"""A failure of Postgres through either road: SQLAlchemy's, or a direct connection's."""

SIZE = 4
"""Direct connections kept per engine: a statement takes well under a millisecond, so four
serve 16 concurrent visits with room to spare."""


class DirectConnections:
    """Up to ``size`` autocommit psycopg connections to one database, lent one at a time."""

    def __init__(self, conninfo: str, *, size: int = SIZE) -> None:
        self._conninfo = conninfo
        self._idle: list[DirectConnection] = []
        self._room = asyncio.Semaphore(size)
        self._closed = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[DirectConnection]:
        async with self._room:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                yield conn
            finally:
                await self._give_back(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def _connect(self) -> DirectConnection:
        millis = round(IDLE_IN_TRANSACTION_SECONDS * 1000)
        return await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            options=f"-c idle_in_transaction_session_timeout={millis}",
        )

    async def _give_back(self, conn: DirectConnection) -> None:
        if conn.broken:  # the server went away: the idle ones are likely gone too
            gone, self._idle = self._idle, []
            for other in gone:
                await other.close()
        reusable = not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE
        if reusable and not self._closed:
            self._idle.append(conn)
        else:  # broken, or left inside a statement by a cancelled caller: never reused
            await conn.close()


async def driver(conn: AsyncConnection) -> DirectConnection:
    """The psycopg connection under a SQLAlchemy one: statements sent on it run in the same
    session and transaction (read-only batches that must stay in the caller's transaction)."""
    found = (await conn.get_raw_connection()).driver_connection
    if found is None:  # only once SQLAlchemy invalidated the connection
        raise ConnectionError("the database connection was invalidated")
    return cast(DirectConnection, found)


_DIALECT = psycopg_dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Compiled:
    """A SQLAlchemy statement as psycopg takes it: its text, and the values of the literals
    it binds (``params`` adds the caller's)."""

    sql: str
    literals: Mapping[str, Any]

    def params(self, bound: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**self.literals, **(bound or {})}


def compiled(statement: ClauseElement) -> Compiled:
    """Compile once (callers keep the result): a statement built with SQLAlchemy's
    expression language, run on a direct connection."""
    found = statement.compile(dialect=_DIALECT)
    return Compiled(str(found), dict(found.params))


def json_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as one JSON text, for a statement that reads them with
    ``jsonb_to_recordset(cast(%(rows)s as jsonb)) as r(column type, ...)``: psycopg sends it
    as it is and Postgres parses it in C, where array parameters are dumped (and their text
    elements escaped) element by element in Python, a millisecond for a few long texts.
    UUIDs become their text; any other value that is not JSON is refused. A NUL character,
    which Postgres stores in neither text nor jsonb (an edit in the dashboard can put one in
    a field the audit quotes), becomes U+FFFD: one such row must not fail the group commit
    it rides in."""
    text = json.dumps(list(rows), default=_json_value, allow_nan=False, separators=(",", ":"))
    return _NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
"""A JSON escape of NUL: ``\\u0000`` after an even run of backslashes (an odd run escapes
the backslash itself, and the text is a literal ``\\u0000``)."""


def _json_value(value: object) -> str:
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"a value of type {type(value).__name__} is not JSON")


def uuid_array(ids: Iterable[UUID]) -> str:
    """A ``uuid[]`` parameter as Postgres' array text, for a statement that casts it
    (``cast(%(ids)s as uuid[])``): one string psycopg sends as it is, where a list of UUIDs
    is dumped element by element in Python (half the CPU of a statement binding 256 ids)."""
    return "{" + ",".join(map(str, ids)) + "}"


_DIRECT: WeakKeyDictionary[AsyncEngine, DirectConnections] = WeakKeyDictionary()


def direct(engine: AsyncEngine) -> DirectConnections:
    """``engine``'s database through direct connections (one set per engine, closed by
    ``dispose``)."""
    found = _DIRECT.get(engine)
    if found is None:
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        found = _DIRECT[engine] = DirectConnections(url)
    return found


async def dispose(engine: AsyncEngine) -> None:
    """Close ``engine``'s direct connections, then its pool."""
    found = _DIRECT.pop(engine, None)
    if found is not None:
        await found.close()
    await engine.dispose()
