"""The reconciler schema: tool definitions (seeded), status, registry of Vapi objects, audit.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SEED = Path(__file__).resolve().parents[2] / "seed" / "platform_tools.json"


def upgrade() -> None:
    op.execute("""
        create table reconciler.tool_definitions (
          name        text primary key,
          description text not null,
          parameters  jsonb not null,
          path        text not null,
          is_async    boolean not null default true,
          roles       text[] not null default '{inbound,outbound}'::text[],
          enabled     boolean not null default true,
          created_at  timestamptz not null default now(),
          updated_at  timestamptz not null default now()
        )""")
    op.execute("""
        create table reconciler.org_status (
          org_id             uuid primary key,
          state              text not null,
          message            text,
          last_synced_at     timestamptz,
          unreconciled_since timestamptz,
          updated_at         timestamptz not null default now(),
          constraint org_status_state_check
            check (state in ('synced', 'progressing', 'failed', 'paused', 'blocked'))
        )""")
    op.execute("""
        create table reconciler.vapi_objects (
          id            bigserial primary key,
          kind          text not null,
          owner_key     text not null,
          org_id        uuid,
          vapi_id       text,
          state         text not null,
          desired_hash  text,
          observed_hash text,
          intent_at     timestamptz,
          updated_at    timestamptz not null default now(),
          constraint vapi_objects_kind_owner_key_key unique (kind, owner_key),
          constraint vapi_objects_kind_check check (kind in ('assistant', 'tool')),
          constraint vapi_objects_state_check check (state in ('creating', 'present'))
        )""")
    op.execute("create index vapi_objects_vapi_id_idx on reconciler.vapi_objects (vapi_id)")
    op.execute("""
        create table reconciler.audit_log (
          id           bigserial primary key,
          at           timestamptz not null default now(),
          reconcile_id text not null,
          org_id       uuid,
          action       text not null,
          vapi_id      text,
          method       text not null,
          path         text not null,
          status_code  integer,
          outcome      text not null,
          detail       jsonb not null default '{}'::jsonb
        )""")
    op.execute("create index audit_log_org_at_idx on reconciler.audit_log (org_id, at)")
    seed_tools()


def seed_tools() -> None:
    tools = json.loads(SEED.read_text(encoding="utf-8"))["tools"]
    statement = sa.text(
        "insert into reconciler.tool_definitions (name, description, parameters, path, is_async)"
        " values (:name, :description, cast(:parameters as jsonb), :path, :is_async)"
        " on conflict (name) do nothing"
    )
    for tool in tools:
        op.get_bind().execute(
            statement,
            {
                "name": tool["name"],
                "description": tool["description"],
                "parameters": json.dumps(tool["parameters"]),
                "path": tool["path"],
                "is_async": tool["async"],
            },
        )
