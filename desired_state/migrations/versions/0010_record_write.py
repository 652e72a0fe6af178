"""What a Vapi write leaves in Postgres, in one round trip: ``reconciler.record_write``.

After each write the controller links the agent to its assistant, checks its claim's
fencing token, records the object's id and baseline and appends the audit row: four
statements and a transaction, eight round trips at 100 writes a second. The function does the
same steps, in the same order (the agent's row before the work row, as the platform's own
triggers lock them), atomically, called as one autocommit statement. A stale fencing token
undoes every step and returns false.

SECURITY INVOKER: it runs with the caller's rights (row-level security included) and can do
nothing the caller could not do statement by statement.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SIGNATURE = (
    "reconciler.record_write(text, text, uuid, text, text, text, text, text, uuid, uuid, "
    "bigint, jsonb)"
)


def upgrade() -> None:
    op.execute("""
        create function reconciler.record_write(
          p_kind text, p_owner_key text, p_org_id uuid, p_vapi_id text,
          p_desired_hash text, p_observed_hash text, p_row_hash text, p_settings_hash text,
          p_agent_id uuid, p_fence_row uuid, p_fence_token bigint, p_audit jsonb
        ) returns boolean
        language plpgsql security invoker
        set search_path = pg_catalog, pg_temp
        as $$
        begin
          if p_agent_id is not null then
            update public.agents set vapi_assistant_id = p_vapi_id
            where id = p_agent_id and vapi_assistant_id is distinct from p_vapi_id;
          end if;
          if p_fence_row is not null then
            perform 1 from reconciler.work_items
            where org_id = p_fence_row and fencing_token = p_fence_token
              and lease_owner is not null
            for share;
            if not found then
              raise exception using errcode = 'RCF01';
            end if;
          end if;
          insert into reconciler.vapi_objects as o
            (kind, owner_key, org_id, vapi_id, state, desired_hash, observed_hash, row_hash,
             settings_hash, updated_at)
          values (p_kind, p_owner_key, p_org_id, p_vapi_id, 'present', p_desired_hash,
                  p_observed_hash, p_row_hash, p_settings_hash, now())
          on conflict on constraint vapi_objects_kind_owner_key_key do update
          set org_id = excluded.org_id, vapi_id = excluded.vapi_id, state = 'present',
              desired_hash = excluded.desired_hash, observed_hash = excluded.observed_hash,
              row_hash = excluded.row_hash, settings_hash = excluded.settings_hash,
              updated_at = now();
          if p_audit is not null then
            insert into reconciler.audit_log
              (reconcile_id, org_id, action, vapi_id, method, path, status_code, outcome,
               detail, agent_id, cause, changes, duration_ms)
            select a.reconcile_id, a.org_id, a.action, a.vapi_id, a.method, a.path,
                   a.status_code, a.outcome, coalesce(a.detail, '{}'), a.agent_id, a.cause,
                   coalesce(a.changes, '[]'), a.duration_ms
            from jsonb_populate_record(null::reconciler.audit_log, p_audit) a;
          end if;
          return true;
        exception when sqlstate 'RCF01' then
          return false;
        end;
        $$
    """)


def downgrade() -> None:
    op.execute(f"drop function {SIGNATURE}")
