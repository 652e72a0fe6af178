"""Alembic environment: always run through ``desired_state.migrate`` with a live connection."""

from __future__ import annotations

from alembic import context

from desired_state.tables import SCHEMA, own

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=own,
    version_table_schema=SCHEMA,
    include_schemas=True,
    include_name=lambda name, type_, parent: type_ != "schema" or name == SCHEMA,
)
with context.begin_transaction():
    context.run_migrations()
