"""Plays the platform against the simulator: builds the Vapi account the platform's own sync
makes today (platform/SYNC.md), through the simulator's HTTP API only.

Exists so adoption tests start from the account the controller meets on its first day, not
from one the controller made. Each step below is one code path of the platform, sending the
body that path sends. Must not import the controller or touch the simulator's state
directly: what it builds, the platform could have built (numbers are seeded through
``/_sim/phone-numbers``, the test door standing for "bought in the dashboard").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from controller.simulator import SimulatorState, SimulatorTransport

PLATFORM_TOOLS = Path(__file__).resolve().parents[1] / "desired_state/seed/platform_tools.json"
"""The six function tools, identical to the shared ``platform-tools.json``."""
DEFAULT_NAME = "CallWaiting AI Outbound"
DEFAULT_VOICE = "Rohan"
DEFAULT_FIRST_MESSAGE = "Hello! This is CallWaiting AI calling."
DEFAULT_MAX_DURATION = 600
SERVER_MESSAGES = ["function-call", "hang", "status-update", "end-of-call-report", "transcript"]
ANALYSIS_PLAN = {
    "summaryPrompt": "Summarize this call in 2-3 sentences.",
    "structuredDataPrompt": "Extract the following from the call transcript.",
    "structuredDataSchema": {
        "type": "object",
        "properties": {
            "sentimentScore": {"type": "number", "description": "0.0 to 1.0"},
            "appointmentBooked": {"type": "boolean", "description": "Booked on this call"},
        },
        "required": ["sentimentScore", "appointmentBooked"],
    },
    "successEvaluationPrompt": "Evaluate if this call achieved its goal.",
    "successEvaluationRubric": "PassFail",
}
"""The fixed plan ``ensureAssistantSynced`` sends on every update (prompts shortened)."""


@dataclass(frozen=True, kw_only=True)
class Agent:
    """The ``agents`` columns ``ensureAssistantSynced`` reads; None where the row has NULL."""

    system_prompt: str
    name: str | None = None
    voice: str | None = None
    voice_provider: str | None = None
    language: str | None = None
    first_message: str | None = None
    max_call_duration: int | None = None
    voice_stability: float | None = None
    voice_similarity_boost: float | None = None


@dataclass(frozen=True, kw_only=True)
class Organization:
    org_id: str
    inbound: Agent
    inbound_number: str
    """E.164 digits of the number bound to the inbound assistant."""
    outbound: Agent | None = None
    outbound_number: str | None = None
    """The outbound caller id: seeded, never bound."""
    number_provider: str = "vapi"
    leftover_duplicate: bool = False
    """The platform failed an update and re-created the inbound assistant after binding its
    number: the old, untagged copy stays behind and keeps the number."""


@dataclass(frozen=True)
class BuiltOrganization:
    org_id: str
    inbound_assistant_id: str
    outbound_assistant_id: str | None
    query_tool_id: str
    inbound_number_id: str
    outbound_number_id: str | None
    duplicate_assistant_id: str | None
    number_bound_to: str
    """The assistant the inbound number routes to: the inbound one, or the leftover."""


@dataclass(frozen=True)
class PlatformAccount:
    tool_ids: Mapping[str, str]
    """The six function tools, by function name."""
    organizations: Mapping[str, BuiltOrganization]


def simulator_client(sim: SimulatorState) -> httpx.AsyncClient:
    """An HTTP client to an in-process simulator, with its account key."""
    return httpx.AsyncClient(
        transport=SimulatorTransport(sim),
        base_url="http://vapi.test",
        headers={"Authorization": f"Bearer {sim.account_key}"},
    )


async def build_platform_account(
    client: httpx.AsyncClient, *, backend_url: str, organizations: Sequence[Organization]
) -> PlatformAccount:
    """Registers the six tools once, then per organization: its assistants, tool links,
    knowledge-base tool and numbers, in the order the platform's code paths run."""
    tool_ids = await register_tools(client, backend_url=backend_url)
    built = {}
    for org in organizations:
        built[org.org_id] = await build_organization(
            client, org, backend_url=backend_url, tool_ids=list(tool_ids.values())
        )
    return PlatformAccount(tool_ids=tool_ids, organizations=built)


async def register_tools(client: httpx.AsyncClient, *, backend_url: str) -> dict[str, str]:
    """``ToolSyncService``: one function tool per definition, shared by every organization."""
    definitions = json.loads(PLATFORM_TOOLS.read_text(encoding="utf-8"))["tools"]
    ids = {}
    for tool in definitions:
        body = {
            "type": "function",
            "function": {
                "name": tool["name"],
                "description": tool["description"],
                "parameters": tool["parameters"],
            },
            "async": tool["async"],
            "server": {"url": f"{backend_url}/api/vapi/tools{tool['path']}"},
        }
        ids[tool["name"]] = (await _send(client, "POST", "/tool", body))["id"]
    return ids


async def build_organization(
    client: httpx.AsyncClient, org: Organization, *, backend_url: str, tool_ids: list[str]
) -> BuiltOrganization:
    query_tool_id = await create_query_tool(client, org_id=org.org_id)
    inbound_id = await save_agent(
        client, org.inbound, backend_url=backend_url, tool_ids=tool_ids, query_id=query_tool_id
    )
    inbound_number = await seed_number(client, org.number_provider, org.inbound_number)
    await bind_number(client, inbound_number, assistant_id=inbound_id)
    duplicate_id = None
    if org.leftover_duplicate:
        duplicate_id, inbound_id = (
            inbound_id,
            await save_agent(
                client,
                org.inbound,
                backend_url=backend_url,
                tool_ids=tool_ids,
                query_id=query_tool_id,
            ),
        )
    outbound_id = None
    if org.outbound is not None:
        outbound_id = await save_agent(
            client, org.outbound, backend_url=backend_url, tool_ids=tool_ids, query_id=query_tool_id
        )
    outbound_number = None
    if org.outbound_number is not None:
        outbound_number = await seed_number(client, org.number_provider, org.outbound_number)
    return BuiltOrganization(
        org_id=org.org_id,
        inbound_assistant_id=inbound_id,
        outbound_assistant_id=outbound_id,
        query_tool_id=query_tool_id,
        inbound_number_id=inbound_number,
        outbound_number_id=outbound_number,
        duplicate_assistant_id=duplicate_id,
        number_bound_to=duplicate_id or inbound_id,
    )


async def save_agent(
    client: httpx.AsyncClient, agent: Agent, *, backend_url: str, tool_ids: list[str], query_id: str
) -> str:
    """One agent saved in the dashboard, re-saved, then a knowledge-base upload: create;
    ``ToolSyncService`` links the six tools (its shallow ``{"model": {"toolIds"}}`` wipes the
    prompt); the re-save's update restores the prompt, keeps the tool ids and adds
    ``analysisPlan``; the knowledge-base route sends back the model it read with the query
    tool appended. Answers the assistant id."""
    body = render_assistant(agent, backend_url=backend_url)
    assistant_id = str((await _send(client, "POST", "/assistant", body))["id"])
    path = f"/assistant/{assistant_id}"
    await _send(client, "PATCH", path, {"model": {"toolIds": tool_ids}})
    kept = (await _send(client, "GET", path))["model"]["toolIds"]
    update = {**body, "model": {**body["model"], "toolIds": kept}, "analysisPlan": ANALYSIS_PLAN}
    await _send(client, "PATCH", path, update)
    model = (await _send(client, "GET", path))["model"]
    await _send(
        client, "PATCH", path, {"model": {**model, "toolIds": [*model["toolIds"], query_id]}}
    )
    return assistant_id


def render_assistant(agent: Agent, *, backend_url: str) -> dict[str, Any]:
    """The create body of ``ensureAssistantSynced`` (SYNC.md's table), no ``metadata``."""
    provider = agent.voice_provider or "vapi"
    provider = "11labs" if provider == "elevenlabs" else provider
    voice: dict[str, Any] = {"provider": provider, "voiceId": agent.voice or DEFAULT_VOICE}
    if provider == "11labs" and agent.voice_stability is not None:
        voice["stability"] = agent.voice_stability
    if provider == "11labs" and agent.voice_similarity_boost is not None:
        voice["similarityBoost"] = agent.voice_similarity_boost
    return {
        "name": agent.name or DEFAULT_NAME,
        "model": {
            "provider": "openai",
            "model": "gpt-4",
            "messages": [{"role": "system", "content": agent.system_prompt}],
        },
        "voice": voice,
        "transcriber": {
            "provider": "deepgram",
            "model": "nova-2",
            "language": agent.language or "en",
        },
        "firstMessage": agent.first_message or DEFAULT_FIRST_MESSAGE,
        "maxDurationSeconds": agent.max_call_duration or DEFAULT_MAX_DURATION,
        "serverUrl": f"{backend_url}/api/vapi/webhook",
        "serverMessages": list(SERVER_MESSAGES),
    }


async def create_query_tool(client: httpx.AsyncClient, *, org_id: str) -> str:
    """The knowledge-base route's per-organization ``query`` tool: every organization's has
    the same function name; one knowledge base per document category."""
    body = {
        "type": "query",
        "function": {"name": "knowledge-search"},
        "knowledgeBases": [
            {
                "provider": "google",
                "name": "general",
                "description": "Contains general information",
                "fileIds": [str(uuid.uuid5(uuid.NAMESPACE_URL, f"kb/{org_id}"))],
            }
        ],
    }
    return str((await _send(client, "POST", "/tool", body))["id"])


async def seed_number(client: httpx.AsyncClient, provider: str, number: str) -> str:
    seeded = await _send(
        client, "POST", "/_sim/phone-numbers", {"provider": provider, "number": number}
    )
    return str(seeded["id"])


async def bind_number(client: httpx.AsyncClient, number_id: str, *, assistant_id: str) -> None:
    """The settings routes' binding of the inbound agent's number."""
    await _send(client, "PATCH", f"/phone-number/{number_id}", {"assistantId": assistant_id})


async def _send(
    client: httpx.AsyncClient, method: str, path: str, body: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.request(method, path, json=body)
    if response.is_error:
        raise AssertionError(f"the platform's {method} {path} failed: {response.text}")
    answer: dict[str, Any] = response.json()
    return answer
