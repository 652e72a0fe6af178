"""The simulator accepts what the platform's account holds (platform/SYNC.md): query tools,
legacy assistant keys, 11labs voice settings, and still rejects what the spec rejects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from controller.simulator import SimulatorState
from controller.simulator.validation import assistant_problems, tool_problems
from tests.platform_account import simulator_client

KNOWLEDGE_BASE = {
    "provider": "google",
    "name": "clinic-kb",
    "description": "What the clinic offers",
    "fileIds": ["41a2bd44-d13c-4914-bbf7-b19807dd2cf4"],
}
QUERY_TOOL = {
    "type": "query",
    "function": {"name": "knowledge-search"},
    "knowledgeBases": [KNOWLEDGE_BASE],
}
PLATFORM_ASSISTANT = {
    "name": "Front desk",
    "model": {
        "provider": "openai",
        "model": "gpt-4",
        "messages": [{"role": "system", "content": "You are the receptionist."}],
    },
    "voice": {"provider": "11labs", "voiceId": "Rachel", "stability": 0.5, "similarityBoost": 0.75},
    "transcriber": {"provider": "deepgram", "model": "nova-2", "language": "en"},
    "firstMessage": "Hello! This is CallWaiting AI calling.",
    "maxDurationSeconds": 600,
    "serverUrl": "https://backend.test/api/vapi/webhook",
    "serverMessages": [
        "function-call",
        "hang",
        "status-update",
        "end-of-call-report",
        "transcript",
    ],
}
LEGACY_ANALYSIS_PLAN = {
    "summaryPrompt": "Summarize the call.",
    "structuredDataPrompt": "Extract the sentiment.",
    "structuredDataSchema": {
        "type": "object",
        "properties": {
            "sentimentScore": {"type": "number", "description": "0..1"},
            "sentimentUrgency": {"type": "string", "enum": ["low", "high"]},
        },
        "required": ["sentimentScore"],
    },
    "successEvaluationPrompt": "Did the call reach its goal?",
    "successEvaluationRubric": "PassFail",
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with simulator_client(SimulatorState(account_key="validation-key")) as opened:
        yield opened


@pytest.mark.parametrize(
    ("body", "stored_type", "problems"),
    [
        (QUERY_TOOL, None, []),
        ({"type": "query", "knowledgeBases": [KNOWLEDGE_BASE]}, None, []),
        ({**QUERY_TOOL, "async": True}, None, ["property async should not exist"]),
        (
            {**QUERY_TOOL, "function": {"name": "kb search"}},
            None,
            ["function.name must match /^[a-zA-Z0-9_-]{1,64}$/"],
        ),
        (
            {**QUERY_TOOL, "function": {"name": "kb", "paramz": {}}},
            None,
            ["property function.paramz should not exist"],
        ),
        (
            {"type": "query", "knowledgeBases": [{"provider": "google", "name": "kb"}]},
            None,
            ["knowledgeBases field required"],
        ),
        (
            {"type": "endCall"},
            None,
            ["type must be one of the following values: function, query"],
        ),
        ({"knowledgeBases": [KNOWLEDGE_BASE]}, "query", []),
        ({"type": "query"}, "query", ["property type should not exist"]),
        ({"server": {"url": "https://b.test"}}, "query", ["property server should not exist"]),
        ({"async": True}, "function", []),
        ({"knowledgeBases": []}, "function", ["property knowledgeBases should not exist"]),
        ({"async": True}, "endCall", ["tools of type endCall are not served by this simulator"]),
    ],
)
def test_tool_bodies_are_checked_against_the_dto_of_their_type(
    body: dict[str, Any], stored_type: str | None, problems: list[str]
) -> None:
    assert tool_problems(body, stored_type=stored_type) == problems


@pytest.mark.parametrize(
    ("body", "update", "problems"),
    [
        (PLATFORM_ASSISTANT, False, []),
        ({**PLATFORM_ASSISTANT, "analysisPlan": LEGACY_ANALYSIS_PLAN}, True, []),
        ({"serverUrl": "backend.test/webhook"}, True, ["serverUrl must be a URL address"]),
        ({"serverUrl": 7}, True, ["serverUrl must be a URL address"]),
        (
            {"analysisPlan": {**LEGACY_ANALYSIS_PLAN, "successEvaluationRubric": "Vibes"}},
            True,
            [
                "analysisPlan.successEvaluationRubric must be one of the following values: "
                "NumericScale, DescriptiveScale, Checklist, Matrix, PercentageScale, "
                "LikertScale, AutomaticRubric, PassFail"
            ],
        ),
        (
            {"analysisPlan": {"summaryPrompt": ["not", "a", "string"]}},
            True,
            ["analysisPlan.summaryPrompt must be a string"],
        ),
        (
            {"analysisPlan": {"summaryPrompts": "typo"}},
            True,
            ["property analysisPlan.summaryPrompts should not exist"],
        ),
        (
            {"voice": {"provider": "vapi", "voiceId": "Rohan", "stabilty": 0.5}},
            True,
            ["property voice.stabilty should not exist"],
        ),
        ({"serverUrlz": "https://b.test"}, True, ["property serverUrlz should not exist"]),
    ],
)
def test_assistant_bodies_take_the_platforms_legacy_keys_and_nothing_looser(
    body: dict[str, Any], update: bool, problems: list[str]
) -> None:
    assert assistant_problems(body, update=update) == problems


async def test_a_query_tool_goes_through_create_read_update_and_delete(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/tool", json=QUERY_TOOL)
    assert created.status_code == 201, created.text
    tool_id = created.json()["id"]
    patched = await client.patch(
        f"/tool/{tool_id}", json={"knowledgeBases": [{**KNOWLEDGE_BASE, "fileIds": ["f-2"]}]}
    )
    listed = (await client.get("/tool")).json()
    deleted = await client.delete(f"/tool/{tool_id}")

    assert created.json()["type"] == "query"
    assert created.json()["function"] == {"name": "knowledge-search"}
    assert "async" not in created.json()
    assert patched.json()["knowledgeBases"][0]["fileIds"] == ["f-2"]
    assert [t["id"] for t in listed] == [tool_id]
    assert deleted.status_code == 200
    assert (await client.get(f"/tool/{tool_id}")).status_code == 404


async def test_the_platforms_assistant_is_stored_as_sent_without_metadata(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/assistant", json=PLATFORM_ASSISTANT)
    assert created.status_code == 201, created.text
    fetched = (await client.get(f"/assistant/{created.json()['id']}")).json()

    for key in ("name", "transcriber", "firstMessage", "maxDurationSeconds", "serverUrl"):
        assert fetched[key] == PLATFORM_ASSISTANT[key], key
    assert fetched["serverMessages"] == PLATFORM_ASSISTANT["serverMessages"]
    assert fetched["voice"] | PLATFORM_ASSISTANT["voice"] == fetched["voice"]
    assert fetched["model"] | PLATFORM_ASSISTANT["model"] == fetched["model"]
    assert fetched["metadata"] is None
    assert "server" not in fetched


async def test_the_fold_server_url_quirk_stores_the_legacy_url_as_server_url() -> None:
    sim = SimulatorState(account_key="validation-key", fold_server_url=True)
    async with simulator_client(sim) as client:
        created = await client.post(
            "/assistant", json={**PLATFORM_ASSISTANT, "server": {"timeoutSeconds": 20}}
        )

    assert created.status_code == 201, created.text
    assert "serverUrl" not in created.json()
    assert created.json()["server"] == {
        "timeoutSeconds": 20,
        "url": "https://backend.test/api/vapi/webhook",
    }
