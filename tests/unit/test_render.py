"""Agent rows render into valid bodies, or fail with a message fit for the status table."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from controller.core.desired import DesiredAgent, DesiredTool
from controller.core.render import (
    InvalidAgentError,
    InvalidToolError,
    render_assistant,
    render_tool,
)
from controller.core.settings import RenderDefaults

AGENT = DesiredAgent(
    agent_id=uuid.uuid4(),
    org_id=uuid.uuid4(),
    role="inbound",
    name="Smile Dental inbound",
    system_prompt="You answer the phone.",
    first_message="Hello!",
    voice="Rachel",
    voice_provider="elevenlabs",
    temperature=0.4,
)


def render(agent: DesiredAgent) -> dict[str, object]:
    return render_assistant(
        agent, tool_ids=["t2", "t1"], defaults=RenderDefaults(), backend_url="https://b.example/"
    )


def test_an_agent_renders_every_managed_field_with_tags_and_sorted_tool_links() -> None:
    body = render(AGENT)

    assert body["name"] == "Smile Dental inbound"
    assert body["voice"] == {"provider": "11labs", "voiceId": "Rachel"}
    assert body["model"] == {
        "provider": "openai",
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "You answer the phone."}],
        "toolIds": ["t1", "t2"],
        "temperature": 0.4,
        "maxTokens": 250,
    }
    assert body["server"] == {"url": "https://b.example/api/vapi/webhook"}
    assert body["metadata"] == {
        "managed_by": "vapi-reconciler",
        "org_id": str(AGENT.org_id),
        "agent_id": str(AGENT.agent_id),
        "role": "inbound",
    }


def test_metadata_others_put_beside_the_tags_is_kept_and_the_tags_win() -> None:
    body = render_assistant(
        AGENT,
        tool_ids=[],
        defaults=RenderDefaults(),
        backend_url="https://b",
        observed_metadata={"crm": "1", "org_id": "forged"},
    )
    assert body["metadata"]["crm"] == "1"  # type: ignore[index]
    assert body["metadata"]["org_id"] == str(AGENT.org_id)  # type: ignore[index]


def test_a_claude_model_gets_the_anthropic_provider() -> None:
    assert render(replace(AGENT, model="claude-3-5-sonnet"))["model"]["provider"] == "anthropic"  # type: ignore[index]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "x" * 41}, "name is 41 characters"),
        ({"name": "  "}, "name is empty"),
        ({"name": "bad\x07name"}, "control characters"),
        ({"system_prompt": ""}, "system prompt is empty"),
        ({"system_prompt": "x" * 100_001}, "system prompt is 100001 characters"),
        ({"voice_provider": "sonos"}, "voice provider 'sonos' is unknown"),
        ({"role": "sideways"}, "role 'sideways'"),
        ({"temperature": 2.5}, "temperature 2.5"),
        ({"max_tokens": 20}, "max tokens 20"),
        ({"max_call_duration": 5}, "max call duration 5"),
    ],
)
def test_a_bad_row_fails_with_a_clear_message(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidAgentError, match=message):
        render(replace(AGENT, **change))  # type: ignore[arg-type]


TOOL = DesiredTool(
    name="endCall",
    description="End the call.",
    parameters={"type": "object", "properties": {"reason": {"type": "string"}}},
    path="/endCall",
    is_async=False,
)


def test_a_tool_renders_without_type_and_with_its_webhook_url() -> None:
    assert render_tool(TOOL, backend_url="https://b.example") == {
        "function": {
            "name": "endCall",
            "description": "End the call.",
            "parameters": TOOL.parameters,
        },
        "async": False,
        "server": {"url": "https://b.example/api/vapi/tools/endCall"},
    }


@pytest.mark.parametrize(
    "change",
    [
        {"name": "end call!"},
        {"parameters": {"type": "array"}},
        {"parameters": {"type": "object", "properties": {"a": {"type": "nonsense"}}}},
        {"path": "endCall"},
    ],
)
def test_a_broken_tool_definition_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidToolError):
        render_tool(replace(TOOL, **change), backend_url="https://b")  # type: ignore[arg-type]


def test_the_definition_hash_changes_with_the_definition_only() -> None:
    assert TOOL.definition_hash == replace(TOOL, enabled=False).definition_hash
    assert TOOL.definition_hash != replace(TOOL, description="Other").definition_hash
