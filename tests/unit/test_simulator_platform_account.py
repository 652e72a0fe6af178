"""``tests/platform_account.py`` builds, in the simulator, the account SYNC.md describes:
checked here field by field so adoption tests can trust it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

from controller.simulator import SimulatorState
from tests.platform_account import (
    DEFAULT_FIRST_MESSAGE,
    SERVER_MESSAGES,
    Agent,
    Organization,
    PlatformAccount,
    build_platform_account,
    render_assistant,
    simulator_client,
)

BACKEND = "https://backend.test"
CLINIC = "0b6e1c8e-4a55-4d7e-9a9f-5d1a3f2c0001"
SPA = "0b6e1c8e-4a55-4d7e-9a9f-5d1a3f2c0002"
ORGANIZATIONS = [
    Organization(
        org_id=CLINIC,
        inbound=Agent(
            name="Clinic Reception",
            system_prompt="You answer the clinic's phone.",
            voice="Rachel",
            voice_provider="elevenlabs",
            language="en-GB",
            voice_stability=0.4,
            voice_similarity_boost=0.8,
            max_call_duration=900,
        ),
        inbound_number="+15550100001",
        outbound=Agent(system_prompt="You call patients back."),
        outbound_number="+15550100002",
        number_provider="twilio",
    ),
    Organization(
        org_id=SPA,
        inbound=Agent(name="Spa Desk", system_prompt="You answer the spa's phone."),
        inbound_number="+15550200001",
        leftover_duplicate=True,
    ),
]


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState(account_key="platform-key")


@pytest.fixture
async def client(sim: SimulatorState) -> AsyncIterator[httpx.AsyncClient]:
    async with simulator_client(sim) as opened:
        yield opened


@pytest.fixture
async def account(client: httpx.AsyncClient) -> PlatformAccount:
    return await build_platform_account(client, backend_url=BACKEND, organizations=ORGANIZATIONS)


def test_six_function_tools_are_registered_once_with_their_webhook_urls(
    sim: SimulatorState, account: PlatformAccount
) -> None:
    tools = {tool_id: sim.objects["tool"][tool_id] for tool_id in account.tool_ids.values()}

    assert sorted(account.tool_ids) == sorted(
        [
            "checkAvailability",
            "bookClinicAppointment",
            "transferCall",
            "lookupCaller",
            "endCall",
            "queryKnowledgeBase",
        ]
    )
    check = tools[account.tool_ids["checkAvailability"]]
    assert check["server"] == {"url": f"{BACKEND}/api/vapi/tools/calendar/check"}
    assert check["async"] is True
    assert tools[account.tool_ids["endCall"]]["async"] is False
    assert all("metadata" not in tool for tool in tools.values())


def test_each_organization_gets_its_own_query_tool(
    sim: SimulatorState, account: PlatformAccount
) -> None:
    query_ids = {built.query_tool_id for built in account.organizations.values()}

    assert len(query_ids) == 2
    assert all(sim.objects["tool"][i]["type"] == "query" for i in query_ids)
    assert len(sim.objects["tool"]) == 8


async def test_assistants_carry_exactly_the_fields_sync_md_lists(
    client: httpx.AsyncClient, account: PlatformAccount
) -> None:
    clinic = account.organizations[CLINIC]
    inbound = (await client.get(f"/assistant/{clinic.inbound_assistant_id}")).json()
    outbound = (await client.get(f"/assistant/{clinic.outbound_assistant_id}")).json()

    assert inbound["name"] == "Clinic Reception"
    assert inbound["model"]["provider"] == "openai"
    assert inbound["model"]["model"] == "gpt-4"
    assert inbound["model"]["messages"] == [
        {"role": "system", "content": "You answer the clinic's phone."}
    ]
    assert (
        inbound["voice"]
        | {"provider": "11labs", "voiceId": "Rachel", "stability": 0.4, "similarityBoost": 0.8}
        == inbound["voice"]
    )
    assert inbound["transcriber"] == {
        "provider": "deepgram",
        "model": "nova-2",
        "language": "en-GB",
    }
    assert inbound["maxDurationSeconds"] == 900
    assert inbound["serverUrl"] == f"{BACKEND}/api/vapi/webhook"
    assert inbound["serverMessages"] == SERVER_MESSAGES
    assert inbound["analysisPlan"]["successEvaluationRubric"] == "PassFail"
    assert inbound["metadata"] is None
    assert outbound["name"] == "CallWaiting AI Outbound"
    assert outbound["firstMessage"] == DEFAULT_FIRST_MESSAGE
    assert outbound["voice"]["voiceId"] == "Rohan"
    assert outbound["transcriber"]["language"] == "en"
    assert outbound["maxDurationSeconds"] == 600


@pytest.mark.parametrize(
    ("agent", "voice"),
    [
        (Agent(system_prompt="p"), {"provider": "vapi", "voiceId": "Rohan"}),
        (
            Agent(system_prompt="p", voice="Paige", voice_provider="vapi", voice_stability=0.5),
            {"provider": "vapi", "voiceId": "Paige"},
        ),
        (
            Agent(system_prompt="p", voice="v1", voice_provider="elevenlabs", voice_stability=0.3),
            {"provider": "11labs", "voiceId": "v1", "stability": 0.3},
        ),
        (
            Agent(system_prompt="p", voice="alloy", voice_provider="openai"),
            {"provider": "openai", "voiceId": "alloy"},
        ),
    ],
)
def test_voice_settings_are_sent_only_for_11labs(agent: Agent, voice: dict[str, Any]) -> None:
    assert render_assistant(agent, backend_url=BACKEND)["voice"] == voice


async def test_tool_links_are_the_six_tools_then_the_query_tool(
    client: httpx.AsyncClient, account: PlatformAccount
) -> None:
    for built in account.organizations.values():
        for assistant_id in (built.inbound_assistant_id, built.outbound_assistant_id):
            if assistant_id is None:
                continue
            model = (await client.get(f"/assistant/{assistant_id}")).json()["model"]
            assert model["toolIds"] == [*account.tool_ids.values(), built.query_tool_id]


async def test_the_inbound_number_routes_to_the_inbound_assistant_and_outbound_is_unbound(
    client: httpx.AsyncClient, account: PlatformAccount
) -> None:
    clinic = account.organizations[CLINIC]
    inbound = (await client.get(f"/phone-number/{clinic.inbound_number_id}")).json()
    outbound = (await client.get(f"/phone-number/{clinic.outbound_number_id}")).json()

    assert inbound["provider"] == "twilio"
    assert inbound["number"] == "+15550100001"
    assert inbound["assistantId"] == clinic.inbound_assistant_id == clinic.number_bound_to
    assert outbound.get("assistantId") is None


async def test_a_leftover_duplicate_keeps_the_number_and_looks_like_the_live_assistant(
    client: httpx.AsyncClient, account: PlatformAccount
) -> None:
    spa = account.organizations[SPA]
    assert spa.duplicate_assistant_id is not None
    live = (await client.get(f"/assistant/{spa.inbound_assistant_id}")).json()
    leftover = (await client.get(f"/assistant/{spa.duplicate_assistant_id}")).json()
    number = (await client.get(f"/phone-number/{spa.inbound_number_id}")).json()

    assert spa.duplicate_assistant_id != spa.inbound_assistant_id
    assert number["assistantId"] == spa.duplicate_assistant_id == spa.number_bound_to
    for key in ("name", "model", "voice", "serverUrl", "metadata"):
        assert leftover[key] == live[key], key


def test_the_platforms_writes_are_its_literal_bodies_and_numbers_are_only_patched(
    sim: SimulatorState, account: PlatformAccount
) -> None:
    number_writes = [w for w in sim.writes if w.resource == "phone-number"]

    assert [(w.method, w.body) for w in number_writes] == [
        ("PATCH", {"assistantId": built.number_bound_to})
        for built in account.organizations.values()
    ]
    assert not any(w.method == "DELETE" for w in sim.writes)
    first_patches: dict[str, Mapping[str, Any]] = {}
    for write in sim.writes:
        if write.method == "PATCH" and write.resource == "assistant":
            first_patches.setdefault(write.vapi_id, write.body)
    assert len(first_patches) == 4
    assert all(
        body == {"model": {"toolIds": list(account.tool_ids.values())}}
        for body in first_patches.values()
    )
