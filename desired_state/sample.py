"""Sample clinics for the demo, the tests and the benchmarks: realistic platform rows,
inserted in bulk (one statement per table).

Fills only the columns the contract names, plus ``organizations.email`` where the live
platform has it (NOT NULL, unique there). Must not be used on a real platform's database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import column, insert, table, text
from sqlalchemy.ext.asyncio import AsyncConnection

from desired_state.tables import agents, organizations

_organizations_with_email = table(
    "organizations", column("id"), column("name"), column("status"), column("email")
)

VOICES = (("vapi", "Elliot"), ("vapi", "Paige"), ("elevenlabs", "Rachel"), ("openai", "alloy"))


@dataclass(frozen=True)
class SampleOrg:
    org_id: UUID
    agent_ids: tuple[UUID, UUID]


def sample_prompt(name: str, role: str) -> str:
    return (
        f"You are the {role} receptionist of {name}. Greet callers warmly, answer questions "
        "about the clinic, check availability before booking, and never give medical advice."
    )


async def seed_clinics(conn: AsyncConnection, count: int, *, start: int = 0) -> list[SampleOrg]:
    """``count`` active organizations, each with an inbound and an outbound agent."""
    orgs: list[dict[str, object]] = []
    rows: list[dict[str, object]] = []
    made: list[SampleOrg] = []
    for number in range(start, start + count):
        org_id = uuid.uuid4()
        name = f"Clinic {number:05d}"
        orgs.append(
            {"id": org_id, "name": name, "status": "active", "email": f"{org_id}@clinic.test"}
        )
        ids = (uuid.uuid4(), uuid.uuid4())
        for agent_id, role in zip(ids, ("inbound", "outbound"), strict=True):
            provider, voice = VOICES[number % len(VOICES)]
            rows.append(
                {
                    "id": agent_id,
                    "org_id": org_id,
                    "role": role,
                    "name": f"{name} {role}"[:40],
                    "system_prompt": sample_prompt(name, role),
                    "first_message": f"Hello, {name}, how can I help?",
                    "voice": voice,
                    "voice_provider": provider,
                    "language": "en-US",
                    "model": "gpt-4o",
                    "temperature": 0.3,
                    "max_tokens": 300,
                    "max_call_duration": 600,
                    "active": True,
                }
            )
        made.append(SampleOrg(org_id, ids))
    if orgs:
        if await _organizations_have_email(conn):
            await conn.execute(insert(_organizations_with_email), orgs)
        else:
            await conn.execute(insert(organizations), [_without_email(org) for org in orgs])
        await conn.execute(insert(agents), rows)
    return made


def _without_email(org: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in org.items() if key != "email"}


async def _organizations_have_email(conn: AsyncConnection) -> bool:
    found = await conn.execute(
        text(
            "select 1 from information_schema.columns where table_schema = 'public' "
            "and table_name = 'organizations' and column_name = 'email'"
        )
    )
    return found.first() is not None
