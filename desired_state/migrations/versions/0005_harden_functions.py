"""Harden the SECURITY DEFINER queue function: no caller but its owner's triggers.

``reconciler.enqueue`` runs with its owner's rights so the platform's roles need no grant on
the reconciler schema. Left executable by PUBLIC, any database user could call it to keep
every organization due; nobody calls it directly, so nobody may. ``pg_temp`` goes last on
its search path, as PostgreSQL's guide to SECURITY DEFINER functions asks.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "alter function reconciler.enqueue(uuid) set search_path = pg_catalog, reconciler, pg_temp"
    )
    op.execute("revoke execute on function reconciler.enqueue(uuid) from public")
