"""Alerting: why an organization is unreconciled, incidents, and their delivery outbox.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        alter table reconciler.org_status
          add column reason text,
          add column consecutive_failures integer not null default 0""")
    op.execute("""
        create table reconciler.alerts (
          id          bigserial primary key,
          key         text not null,
          org_id      uuid,
          status      text not null,
          reason      text not null,
          message     text not null default '',
          since       timestamptz not null,
          fired_at    timestamptz not null default now(),
          resolved_at timestamptz,
          constraint alerts_status_check check (status in ('firing', 'resolved'))
        )""")
    op.execute("""
        create unique index alerts_one_open_incident
          on reconciler.alerts (key) where status = 'firing'""")
    op.execute("""
        create table reconciler.alert_deliveries (
          id              bigserial primary key,
          alert_id        bigint not null references reconciler.alerts (id) on delete cascade,
          sink            text not null,
          event           text not null,
          attempts        integer not null default 0,
          next_attempt_at timestamptz not null default now(),
          delivered_at    timestamptz,
          last_error      text,
          constraint alert_deliveries_event_check check (event in ('firing', 'resolved')),
          constraint alert_deliveries_once unique (alert_id, sink, event)
        )""")
    op.execute("""
        create index alert_deliveries_due on reconciler.alert_deliveries (next_attempt_at)
          where delivered_at is null""")
