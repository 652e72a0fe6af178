"""``vapi-reconciler migrate``: bring the controller's schema to the newest revision.

Serialised with an advisory lock, so replicas that start together migrate once.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from desired_state.engine import sync_engine
from desired_state.tables import SCHEMA

HERE = Path(__file__).resolve().parent
MIGRATE_LOCK = 0x7661_7069  # "vapi": the advisory lock key for migrations


def head_revision() -> str:
    """The newest revision the migrations define."""
    config = Config()
    config.set_main_option("script_location", str(HERE / "migrations"))
    return str(ScriptDirectory.from_config(config).get_current_head())


def migrate(url: str, *, with_platform_schema: bool = False) -> str:
    """Upgrade to head; returns the revision now in force."""
    engine = sync_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK})
            if with_platform_schema:
                conn.exec_driver_sql((HERE / "platform_schema.sql").read_text(encoding="utf-8"))
            conn.execute(text(f"create schema if not exists {SCHEMA}"))
            config = Config()
            config.set_main_option("script_location", str(HERE / "migrations"))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            if _platform_tables_exist(conn):
                conn.exec_driver_sql((HERE / "triggers.sql").read_text(encoding="utf-8"))
            context = MigrationContext.configure(conn, opts={"version_table_schema": SCHEMA})
            return context.get_current_revision() or ""
    finally:
        engine.dispose()


def _platform_tables_exist(conn: Connection) -> bool:
    found = conn.execute(
        text(
            "select count(*) from pg_tables where schemaname = 'public' "
            "and tablename in ('organizations', 'agents')"
        )
    )
    return bool(found.scalar_one() == 2)
