-- Change triggers on the desired-state tables: every change marks its organization's work
-- row due in the interactive lane (reconciler.enqueue: somebody is waiting for this edit, so
-- it is claimed before bulk work such as a cold start) and sends NOTIFY vapi_reconciler
-- (a wake-up hint; the row is the guarantee).
-- Installed by every `migrate` once the platform tables exist; idempotent.
-- The controller's own write (agents.vapi_assistant_id) does not count as a change.
-- They never refuse a platform write: a NULL org_id (the live platform allows it) enqueues
-- nothing, an org_id change enqueues both organizations, a bulk statement each row's own.
-- The functions run as their owner (SECURITY DEFINER, fixed search_path with pg_temp last)
-- so the platform's roles need no grant on the reconciler schema; nobody may call them
-- directly (triggers check EXECUTE when they are created, not when they fire).

create or replace function reconciler.on_org_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, reconciler, pg_temp as $$
begin
  if tg_op in ('UPDATE', 'DELETE') and old.id is not null then
    perform reconciler.enqueue(old.id);
  end if;
  if tg_op = 'INSERT' or (tg_op = 'UPDATE' and new.id is distinct from old.id) then
    if new.id is not null then perform reconciler.enqueue(new.id); end if;
  end if;
  return null;
end $$;

create or replace function reconciler.on_agent_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, reconciler, pg_temp as $$
begin
  if tg_op in ('UPDATE', 'DELETE') and old.org_id is not null then
    perform reconciler.enqueue(old.org_id);
  end if;
  if tg_op = 'INSERT' or (tg_op = 'UPDATE' and new.org_id is distinct from old.org_id) then
    if new.org_id is not null then perform reconciler.enqueue(new.org_id); end if;
  end if;
  return null;
end $$;

create or replace function reconciler.on_tool_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, reconciler, pg_temp as $$
begin
  perform reconciler.enqueue('00000000-0000-0000-0000-000000000000'::uuid);
  return null;
end $$;

drop trigger if exists vapi_reconciler_org_change on public.organizations;
create trigger vapi_reconciler_org_change
  after insert or delete or update of id, status on public.organizations
  for each row execute function reconciler.on_org_change();

drop trigger if exists vapi_reconciler_agent_write on public.agents;
create trigger vapi_reconciler_agent_write
  after insert or delete on public.agents
  for each row execute function reconciler.on_agent_change();

drop trigger if exists vapi_reconciler_agent_update on public.agents;
create trigger vapi_reconciler_agent_update
  after update on public.agents
  for each row
  when ((to_jsonb(old) - 'vapi_assistant_id' - 'updated_at')
        is distinct from (to_jsonb(new) - 'vapi_assistant_id' - 'updated_at'))
  execute function reconciler.on_agent_change();

drop trigger if exists vapi_reconciler_tool_change on reconciler.tool_definitions;
create trigger vapi_reconciler_tool_change
  after insert or update or delete on reconciler.tool_definitions
  for each statement execute function reconciler.on_tool_change();

revoke execute on function reconciler.on_org_change() from public;
revoke execute on function reconciler.on_agent_change() from public;
revoke execute on function reconciler.on_tool_change() from public;
