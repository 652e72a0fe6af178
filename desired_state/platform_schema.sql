-- The platform's tables, exactly as CONTRACT.md section 1 gives them; created only if absent.
create table if not exists organizations (
  id          uuid primary key default gen_random_uuid(),
  name        text not null,
  status      text not null default 'active',
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create table if not exists agents (
  id                uuid primary key default gen_random_uuid(),
  org_id            uuid not null references organizations(id) on delete cascade,
  role              text not null default 'inbound',
  name              text not null,
  system_prompt     text not null,
  first_message     text,
  voice             text,
  voice_provider    text,
  language          text default 'en-US',
  model             text,
  temperature       numeric,
  max_tokens        integer,
  max_call_duration integer default 600,
  voice_stability   numeric,
  voice_similarity_boost numeric,
  vapi_phone_number_id text,
  vapi_assistant_id text,
  active            boolean not null default true,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now(),
  unique (org_id, role)
);
create table if not exists org_tools (
  id              bigserial primary key,
  org_id          uuid not null references organizations(id) on delete cascade,
  tool_name       varchar(255) not null,
  vapi_tool_id    varchar(255) not null,
  definition_hash varchar(64),
  created_at      timestamptz default now(),
  updated_at      timestamptz default now(),
  unique (org_id, tool_name)
);
create table if not exists integrations (
  id       uuid primary key default gen_random_uuid(),
  org_id   uuid not null references organizations(id) on delete cascade,
  provider text not null,
  config   jsonb not null default '{}',
  unique (org_id, provider)
);
