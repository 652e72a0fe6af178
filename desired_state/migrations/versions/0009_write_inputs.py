"""What each write was rendered from, so a mass rewrite caused by configuration is told apart
from the platform's own row changes (the mass-update guard).

``vapi_objects`` gains ``row_hash`` (a fingerprint of the agent row's fields the last write
was rendered from) and ``settings_hash`` (of the render profile and ``BACKEND_URL``). NULL on
rows written before this revision: their next update is never held.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("alter table reconciler.vapi_objects add column row_hash text")
    op.execute("alter table reconciler.vapi_objects add column settings_hash text")


def downgrade() -> None:
    op.execute("alter table reconciler.vapi_objects drop column settings_hash")
    op.execute("alter table reconciler.vapi_objects drop column row_hash")
