"""A platform write is never refused because of the controller: NULL organization ids.

The live platform's ``agents.org_id`` (and ``integrations.org_id``) is nullable. The change
triggers passed a NULL on to ``reconciler.enqueue``, whose insert into ``work_items`` failed,
and with it the platform's own statement. ``enqueue`` now ignores a NULL (nothing to
reconcile); the trigger functions in ``triggers.sql``, which every ``migrate`` installs again,
skip it too.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        create or replace function reconciler.enqueue(p_org uuid) returns void
        language sql security definer set search_path = pg_catalog, reconciler, pg_temp as $$
          insert into reconciler.work_items as w (org_id, generation, due_at)
          select p_org, 1, now() where p_org is not null
          on conflict (org_id) do update
            set generation = w.generation + 1, due_at = least(w.due_at, now()),
                attempts = 0, updated_at = now();
          select pg_notify('vapi_reconciler', p_org::text) where p_org is not null;
        $$""")
    op.execute("revoke execute on function reconciler.enqueue(uuid) from public")
