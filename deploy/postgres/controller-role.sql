-- The least-privilege role the controller runs as (`run`, `reconcile`, `plan`, `status`).
--
-- Run it as the owner of the reconciler schema (the role that ran `vapi-reconciler migrate`,
-- which also owns or may grant on the platform's tables), in the platform's database, after
-- every `migrate`:
--   psql "$ADMIN_DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/controller-role.sql
--   psql "$ADMIN_DATABASE_URL" -c "alter role vapi_reconciler password '...'"   -- once
-- then point the controller's DATABASE_URL at postgresql://vapi_reconciler@.../platform.
-- `migrate` itself needs the owner; the controller never creates or alters anything.
--
-- What the role may do:
--   platform tables  read organizations, agents, integrations, org_tools;
--                    write agents.vapi_assistant_id (that column only) and org_tools rows
--   reconciler       read and write its tables (status, queue, registry, alerts, audit);
--                    read the migration version; call reconciler.record_write (SECURITY
--                    INVOKER: what a write leaves in Postgres, under this role's own rights)
-- It may not: delete or insert agents or organizations, change any other agent column,
-- create objects, or call the SECURITY DEFINER trigger functions.
--
-- Row-level security (the live platform has it on all four tables, with policies for its own
-- roles only): a role without a policy sees no rows at all, and the controller would take an
-- empty table for "nothing desired". The block at the end gives this role one permissive
-- policy per command it needs, `using (true)`, on each platform table that exists and has
-- RLS on: SELECT on organizations, agents, integrations; UPDATE on agents (the column grant
-- above keeps it to vapi_assistant_id); SELECT, INSERT, UPDATE, DELETE on org_tools.
-- They are dropped and created again on every run (idempotent), and named
-- vapi_reconciler_<command>, as `doctor` and the controller's refusal message name them.
-- Instead of the policies, a role that bypasses RLS sees every row:
--   alter role vapi_reconciler bypassrls;   -- needs a superuser (not available on Supabase)
-- That also lets it past any policy added later, so the policies are the narrower choice.

do $$
begin
  if not exists (select from pg_roles where rolname = 'vapi_reconciler') then
    create role vapi_reconciler login nosuperuser nocreatedb nocreaterole noinherit;
  end if;
end
$$;

revoke all on schema reconciler from public;

grant usage on schema public to vapi_reconciler;
grant select on public.organizations, public.agents, public.integrations, public.org_tools
  to vapi_reconciler;
grant update (vapi_assistant_id) on public.agents to vapi_reconciler;
grant insert, update, delete on public.org_tools to vapi_reconciler;
grant usage on sequence public.org_tools_id_seq to vapi_reconciler;

grant usage on schema reconciler to vapi_reconciler;
grant select, insert, update, delete on all tables in schema reconciler to vapi_reconciler;
revoke insert, update, delete, truncate on reconciler.alembic_version from vapi_reconciler;
grant usage, select on all sequences in schema reconciler to vapi_reconciler;
grant execute on function reconciler.record_write(text, text, uuid, text, text, text, text, text,
  uuid, uuid, bigint, jsonb) to vapi_reconciler;

do $$
declare
  item text;
  tbl text;
  cmd text;
begin
  foreach item in array array[
    'organizations:select', 'agents:select', 'agents:update', 'integrations:select',
    'org_tools:select', 'org_tools:insert', 'org_tools:update', 'org_tools:delete'
  ] loop
    tbl := split_part(item, ':', 1);
    cmd := split_part(item, ':', 2);
    if exists (
      select from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relname = tbl and c.relkind in ('r', 'p')
        and c.relrowsecurity
    ) then
      execute format('drop policy if exists %I on public.%I', 'vapi_reconciler_' || cmd, tbl);
      execute format(
        'create policy %I on public.%I for %s to vapi_reconciler %s',
        'vapi_reconciler_' || cmd, tbl, cmd,
        case cmd
          when 'insert' then 'with check (true)'
          when 'update' then 'using (true) with check (true)'
          else 'using (true)'
        end);
    end if;
  end loop;
end
$$;
