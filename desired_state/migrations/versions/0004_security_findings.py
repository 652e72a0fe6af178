"""Security findings: credentials found where the controller must never take them from.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        create table reconciler.security_findings (
          org_id        uuid not null,
          kind          text not null,
          location      text not null,
          first_seen_at timestamptz not null default now(),
          last_seen_at  timestamptz not null default now(),
          primary key (org_id, kind, location)
        )""")
