"""Throwaway databases for the demo and the tests: on a given server, or on an embedded
PostgreSQL (the ``pgserver`` wheel) when no server is given."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from desired_state.engine import sync_engine


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) a server keeping its data in ``data_dir``; yields its admin URL."""
    from pgserver import get_server  # type: ignore[attr-defined]

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(str(data_dir), cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@contextmanager
def scratch_database(
    admin_url: str, *, prefix: str = "vapi_reconciler", template: str | None = None
) -> Iterator[str]:
    """A new database on the server of ``admin_url`` (empty, or a copy of ``template``),
    dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sync_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    copy = f' template "{template}"' if template else ""
    try:
        with admin.connect() as conn:
            conn.execute(text(f'create database "{name}"{copy}'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'drop database if exists "{name}" with (force)'))
    finally:
        admin.dispose()
