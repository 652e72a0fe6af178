"""The operator's view: what each Vapi write changed and why, and what each daemon runs with.

``audit_log`` gains the agent, the cause (desired change, drift, adoption, relink, prune), the
fields changed with their values before and after (redacted before they are written), and
the write's duration; an index on ``at`` lets the retention job trim old rows cheaply.
``replicas`` gains what a daemon reports at each heartbeat (version, mode, paused), so
``status`` shows what the daemons do rather than what its own config file says.

Revision ID: 0008
Revises: 0006 (re-chained onto 0007 at merge)
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        alter table reconciler.audit_log
          add column agent_id    uuid,
          add column cause       text,
          add column changes     jsonb not null default '[]'::jsonb,
          add column duration_ms integer""")
    op.execute("create index audit_log_at_idx on reconciler.audit_log (at)")
    op.execute("""
        alter table reconciler.replicas
          add column version text,
          add column mode    text,
          add column paused  boolean""")
