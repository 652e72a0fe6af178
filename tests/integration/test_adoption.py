"""Adopting the account the platform's own sync built (platform/SYNC.md) without changing it:
with the voxanne profile the first pass only adds the ownership tags, and the knowledge-base
tool the platform linked stays linked (issue 15)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core.actions import AdoptTool, UpdateAssistant
from controller.reconcile.full_pass import plan_pass, reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.sample import seed_clinics
from tests.conftest import BACKEND
from tests.integration.helpers import writes
from tests.platform_account import (
    Agent,
    Organization,
    PlatformAccount,
    build_platform_account,
    simulator_client,
)


async def platform_built(
    platform: AsyncEngine, sim: SimulatorState, count: int, *, leftover: bool = False
) -> PlatformAccount:
    """``count`` clinics in Postgres, and their assistants as the platform's sync made them;
    the agents' model columns hold the live defaults the platform never sends."""
    async with platform.begin() as conn:
        clinics = await seed_clinics(conn, count)
        rows = (await conn.execute(text("select * from agents order by org_id, role"))).mappings()
        by_org: dict[Any, dict[str, Any]] = {}
        for row in rows:
            by_org.setdefault(row["org_id"], {})[row["role"]] = dict(row)
    organizations = [
        Organization(
            org_id=str(c.org_id),
            inbound=_agent(by_org[c.org_id]["inbound"]),
            outbound=_agent(by_org[c.org_id]["outbound"]),
            inbound_number=f"+1555000{n:04d}",
            leftover_duplicate=leftover and n == 0,
        )
        for n, c in enumerate(clinics)
    ]
    async with simulator_client(sim) as client:
        account = await build_platform_account(
            client, backend_url=BACKEND, organizations=organizations
        )
    async with platform.begin() as conn:
        for c in clinics:
            built = account.organizations[str(c.org_id)]
            for role, vapi_id in (
                ("inbound", built.inbound_assistant_id),
                ("outbound", built.outbound_assistant_id),
            ):
                await conn.execute(
                    text(
                        "update agents set vapi_assistant_id = :v, model = "
                        "'llama-3.3-70b-versatile', temperature = 0.7, max_tokens = 500 "
                        "where org_id = :o and role = :r"
                    ),
                    {"v": vapi_id, "o": c.org_id, "r": role},
                )
    sim.writes.clear()
    return account


def _agent(row: dict[str, Any]) -> Agent:
    return Agent(
        system_prompt=row["system_prompt"],
        name=row["name"],
        voice=row["voice"],
        voice_provider=row["voice_provider"],
        language=row["language"],
        first_message=row["first_message"],
        max_call_duration=row["max_call_duration"],
    )


def voxanne(runtime: Runtime) -> Runtime:
    settings = runtime.settings.model_copy(
        update={"render": runtime.settings.render.model_copy(update={"profile": "voxanne"})}
    )
    return Runtime(runtime.engine, runtime.client, settings)


@pytest.mark.both_schemas
async def test_adopting_the_platforms_account_only_adds_the_ownership_tags(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    account = await platform_built(platform, sim, 3, leftover=True)
    runtime = voxanne(runtime)

    planned = await plan_pass(runtime)
    first = await reconcile_pass(runtime)
    patches = Counter(frozenset(w.body) for w in writes(sim, "PATCH", "assistant"))
    tool_writes = writes(sim, resource="tool")
    sim.writes.clear()
    second = await reconcile_pass(runtime)

    assert [type(a) for a in planned.tools.actions] == [AdoptTool] * 6
    for org in planned.orgs.values():
        assert {type(a) for a in org.actions} == {UpdateAssistant}
        assert all(set(a.patch) == {"metadata"} for a in org.actions)  # type: ignore[union-attr]
    assert first.converged
    assert second.converged
    assert patches == {frozenset({"metadata"}): 6}, "one metadata-only PATCH per assistant"
    assert tool_writes == []
    assert sim.writes == [], "the second pass writes nothing"
    for built in account.organizations.values():
        inbound = sim.objects["assistant"][built.inbound_assistant_id]
        assert built.query_tool_id in inbound["model"]["toolIds"], "the platform's tool stays"
        assert inbound["model"]["model"] == "gpt-4"
        assert inbound["metadata"]["managed_by"] == "vapi-reconciler"
    leftover = next(
        b.duplicate_assistant_id for b in account.organizations.values() if b.duplicate_assistant_id
    )
    assert "metadata" not in sim.objects["assistant"][leftover] or not sim.objects["assistant"][
        leftover
    ].get("metadata"), "an untagged leftover is never adopted"


async def test_the_default_profile_would_rewrite_the_platforms_assistants(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    await platform_built(platform, sim, 1)

    planned = await plan_pass(runtime)

    (org,) = planned.orgs.values()
    keys = {key for a in org.actions if isinstance(a, UpdateAssistant) for key in a.patch}
    assert {"model", "metadata"} <= keys, "the columns' llama model would replace gpt-4"


async def test_a_prompt_change_keeps_the_knowledge_base_tool_in_its_place(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    account = await platform_built(platform, sim, 1)
    runtime = voxanne(runtime)
    await reconcile_pass(runtime)
    (built,) = account.organizations.values()
    before = list(sim.objects["assistant"][built.inbound_assistant_id]["model"]["toolIds"])
    await _set(platform, built.inbound_assistant_id, system_prompt="A new prompt.")

    await reconcile_pass(runtime)

    model = sim.objects["assistant"][built.inbound_assistant_id]["model"]
    assert model["messages"][0]["content"] == "A new prompt."
    assert model["toolIds"] == before


async def test_elevenlabs_tuning_is_sent_and_kept_through_a_voice_change(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    account = await platform_built(platform, sim, 1)
    runtime = voxanne(runtime)
    (built,) = account.organizations.values()
    await _set(
        platform,
        built.inbound_assistant_id,
        voice_provider="elevenlabs",
        voice="rachel",
        voice_stability=0.4,
        voice_similarity_boost=0.8,
    )
    await reconcile_pass(runtime)
    await _set(platform, built.inbound_assistant_id, voice="domi")

    await reconcile_pass(runtime)

    voice = sim.objects["assistant"][built.inbound_assistant_id]["voice"]
    assert voice == {**voice, "provider": "11labs", "voiceId": "domi"}
    assert (voice["stability"], voice["similarityBoost"]) == (0.4, 0.8)


async def _set(platform: AsyncEngine, vapi_id: str, **values: Any) -> None:
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    async with platform.begin() as conn:
        await conn.execute(
            text(f"update agents set {assignments} where vapi_assistant_id = :vapi_id"),
            {**values, "vapi_id": vapi_id},
        )
