"""The work queue (one durable row per organization) and the replica registry.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        create table reconciler.work_items (
          org_id             uuid primary key,
          generation         bigint not null default 0,
          due_at             timestamptz not null default now(),
          lease_owner        text,
          lease_expires_at   timestamptz,
          fencing_token      bigint not null default 0,
          claimed_generation bigint,
          attempts           integer not null default 0,
          last_error         text,
          updated_at         timestamptz not null default now()
        )""")
    op.execute("create index work_items_due_idx on reconciler.work_items (due_at)")
    op.execute("""
        create table reconciler.replicas (
          replica_id   text primary key,
          started_at   timestamptz not null default now(),
          heartbeat_at timestamptz not null default now()
        )""")
    op.execute("""
        create or replace function reconciler.enqueue(p_org uuid) returns void
        language sql security definer set search_path = pg_catalog, reconciler as $$
          insert into reconciler.work_items as w (org_id, generation, due_at)
          values (p_org, 1, now())
          on conflict (org_id) do update
            set generation = w.generation + 1, due_at = least(w.due_at, now()),
                attempts = 0, updated_at = now();
          select pg_notify('vapi_reconciler', p_org::text);
        $$""")
