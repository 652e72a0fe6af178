"""Database URLs and engines. One place turns a ``postgresql://`` URL into SQLAlchemy's."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


class DatabaseURLError(ValueError):
    """The database URL is missing or not a PostgreSQL URL."""


def sqlalchemy_url(url: str) -> str:
    if not url:
        raise DatabaseURLError("no database URL: set DATABASE_URL or [database] url")
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise DatabaseURLError(f"database URL is not valid: {type(exc).__name__}") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise DatabaseURLError("database URL must start with postgresql://")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def sync_engine(url: str) -> Engine:
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True)


IDLE_IN_TRANSACTION_SECONDS = 2.0
"""The controller never waits inside a transaction (no Vapi call is made in one). A process
stopped in the middle of one (SIGSTOP, a frozen VM) would hold its row locks and block the
platform's own writes to those rows; Postgres ends such a session after this long."""


def async_engine(
    url: str, *, pool_size: int = 10, idle_in_transaction_seconds: float | None = None
) -> AsyncEngine:
    """No pre-ping: it is a round trip before every transaction of the hot path. A connection
    Postgres dropped fails its statement once; SQLAlchemy then invalidates the pool and the
    caller's retry (every daemon part retries) gets a fresh connection.
    ``idle_in_transaction_seconds``: Postgres ends a session idle that long inside a
    transaction, releasing its locks (the controller's engine: see
    ``IDLE_IN_TRANSACTION_SECONDS``).
    No hstore adapter: no table has an hstore column, and looking the type up is a catalog
    query on the first connection, which every command's start waits for (issue 17)."""
    connect_args = {}
    if idle_in_transaction_seconds is not None:
        millis = round(idle_in_transaction_seconds * 1000)
        connect_args["options"] = f"-c idle_in_transaction_session_timeout={millis}"
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args=connect_args,
        use_native_hstore=False,
    )
