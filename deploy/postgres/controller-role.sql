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
--                    read the migration version; call no function
-- It may not: delete or insert agents or organizations, change any other agent column,
-- create objects, or call the SECURITY DEFINER trigger functions.

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
