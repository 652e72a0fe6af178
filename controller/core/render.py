"""Render desired rows into the Vapi request bodies the controller manages.

Every agent row is validated here first: a bad row raises ``InvalidAgentError`` with a message
fit for the status table, and nothing else is affected. Must not do I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from controller.core.desired import DesiredAgent, DesiredTool
from controller.core.observed import MANAGED_BY, TOOL_ROUTE
from controller.core.tool_schema import parameters_problem

if TYPE_CHECKING:
    from controller.core.settings import RenderDefaults

NAME_MAX = 40
PROMPT_MAX_CHARS = 100_000
FIRST_MESSAGE_MAX_CHARS = 10_000
ROLES = ("inbound", "outbound")
VAPI_VOICE_PROVIDERS = (
    "azure", "cartesia", "custom-voice", "deepgram", "11labs", "hume", "lmnt", "neuphonic",
    "openai", "playht", "wellsaid", "rime-ai", "smallest-ai", "tavus", "vapi", "sesame",
    "inworld", "minimax", "xai", "microsoft",
)  # fmt: skip
"""Every voice provider of Vapi's published spec (``oneOf`` of the assistant's voice)."""
VOICE_PROVIDERS = {
    **{name: name for name in VAPI_VOICE_PROVIDERS},
    "elevenlabs": "11labs",
    "rime": "rime-ai",
}
"""The platform's spelling -> Vapi's."""
MODEL_PROVIDER_PREFIXES = (
    ("claude", "anthropic"),
    ("gemini", "google"),
    ("llama", "groq"),
    ("mixtral", "groq"),
    ("gpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt", "openai"),
)
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class InvalidAgentError(ValueError):
    """An agent row cannot be rendered into a valid assistant."""


class InvalidToolError(ValueError):
    """A tool definition cannot be rendered into a valid Vapi tool."""


def ownership_tags(agent: DesiredAgent) -> dict[str, str]:
    return {
        "managed_by": MANAGED_BY,
        "org_id": str(agent.org_id),
        "agent_id": str(agent.agent_id),
        "role": agent.role,
    }


def render_assistant(
    agent: DesiredAgent,
    *,
    tool_ids: Sequence[str],
    defaults: RenderDefaults,
    backend_url: str,
    observed_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full body of every field the controller owns, for a POST or a PATCH, as the
    render profile ``defaults`` says (see ``controller.core.settings.RenderDefaults``).

    ``observed_metadata`` keeps keys others put beside the ownership tags: PATCH is shallow,
    so ``metadata`` is always sent whole. ``tool_ids`` are the controller's own tools for the
    agent's role; ids of others are kept by ``controller.core.ownership``.
    """
    if not agent.name.strip() and defaults.name_when_empty:
        agent = replace(agent, name=defaults.name_when_empty)
    validate_agent(agent)
    model_name = (agent.model if defaults.model_from_row else None) or defaults.model
    model: dict[str, Any] = {
        "provider": model_provider(model_name, default=defaults.model_provider)
        if defaults.model_from_row
        else defaults.model_provider,
        "model": model_name,
        "messages": [{"role": "system", "content": agent.system_prompt}],
        "toolIds": sorted(tool_ids),
    }
    if defaults.sampling_from_row:
        temperature = agent.temperature if agent.temperature is not None else defaults.temperature
        max_tokens = agent.max_tokens if agent.max_tokens is not None else defaults.max_tokens
        model |= {"temperature": float(temperature), "maxTokens": int(max_tokens)}
    webhook = backend_url.rstrip("/") + defaults.webhook_path
    body: dict[str, Any] = {
        "name": agent.name,
        "model": model,
        "voice": render_voice(agent, defaults),
        "transcriber": {
            "provider": defaults.transcriber_provider,
            "model": defaults.transcriber_model,
            "language": agent.language or defaults.language,
        },
        "maxDurationSeconds": agent.max_call_duration or defaults.max_duration_seconds,
        "metadata": {**(observed_metadata or {}), **ownership_tags(agent)},
        "firstMessage": agent.first_message or defaults.first_message or None,
    }
    if defaults.webhook_field == "serverUrl":
        body["serverUrl"] = webhook
    else:
        body["server"] = {"url": webhook}
    if defaults.server_messages:
        body["serverMessages"] = list(defaults.server_messages)
    return body


def render_voice(agent: DesiredAgent, defaults: RenderDefaults) -> dict[str, Any]:
    """The voice; ElevenLabs tuning (stability, similarityBoost) where the row sets it."""
    provider = VOICE_PROVIDERS[agent.voice_provider or defaults.voice_provider]
    voice: dict[str, Any] = {"provider": provider, "voiceId": agent.voice or defaults.voice}
    if provider == "11labs":
        if agent.voice_stability is not None:
            voice["stability"] = float(agent.voice_stability)
        if agent.voice_similarity_boost is not None:
            voice["similarityBoost"] = float(agent.voice_similarity_boost)
    return voice


def validate_agent(agent: DesiredAgent) -> None:
    problems: list[str] = []
    if agent.role not in ROLES:
        problems.append(f"role {agent.role!r} is not one of {', '.join(ROLES)}")
    if not agent.name.strip():
        problems.append("name is empty")
    elif len(agent.name) > NAME_MAX:
        problems.append(f"name is {len(agent.name)} characters; Vapi allows {NAME_MAX}")
    elif _CONTROL.search(agent.name):
        problems.append("name contains control characters")
    if not agent.system_prompt.strip():
        problems.append("system prompt is empty")
    elif len(agent.system_prompt) > PROMPT_MAX_CHARS:
        problems.append(
            f"system prompt is {len(agent.system_prompt)} characters; the limit is "
            f"{PROMPT_MAX_CHARS}"
        )
    if agent.first_message is not None and len(agent.first_message) > FIRST_MESSAGE_MAX_CHARS:
        problems.append(f"first message exceeds {FIRST_MESSAGE_MAX_CHARS} characters")
    if agent.voice_provider is not None and agent.voice_provider not in VOICE_PROVIDERS:
        problems.append(f"voice provider {agent.voice_provider!r} is unknown")
    if agent.voice is not None and not agent.voice.strip():
        problems.append("voice is empty")
    if agent.temperature is not None and not 0 <= agent.temperature <= 2:
        problems.append(f"temperature {agent.temperature} is outside 0..2")
    if agent.max_tokens is not None and not 50 <= agent.max_tokens <= 10000:
        problems.append(f"max tokens {agent.max_tokens} is outside 50..10000")
    for name, tuning in (
        ("voice stability", agent.voice_stability),
        ("voice similarity boost", agent.voice_similarity_boost),
    ):
        if tuning is not None and not 0 <= tuning <= 1:
            problems.append(f"{name} {tuning} is outside 0..1")
    if agent.max_call_duration is not None and not 10 <= agent.max_call_duration <= 43200:
        problems.append(f"max call duration {agent.max_call_duration} is outside 10..43200")
    if problems:
        raise InvalidAgentError("; ".join(problems))


def model_provider(model: str, *, default: str) -> str:
    for prefix, provider in MODEL_PROVIDER_PREFIXES:
        if model.startswith(prefix):
            return provider
    return default


def tool_url(tool: DesiredTool, *, backend_url: str) -> str:
    return backend_url.rstrip("/") + TOOL_ROUTE + tool.path


def render_tool(tool: DesiredTool, *, backend_url: str) -> dict[str, Any]:
    """The body of a function tool without ``type`` (which PATCH must never carry)."""
    validate_tool(tool)
    return {
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
        "async": tool.is_async,
        "server": {"url": tool_url(tool, backend_url=backend_url)},
    }


def validate_tool(tool: DesiredTool) -> None:
    if not TOOL_NAME.match(tool.name):
        raise InvalidToolError(f"tool name {tool.name!r} must match {TOOL_NAME.pattern}")
    if not tool.path.startswith("/"):
        raise InvalidToolError(f"tool {tool.name}: path {tool.path!r} must start with '/'")
    problem = parameters_problem(tool.parameters)
    if problem:
        raise InvalidToolError(f"tool {tool.name}: {problem}")
    # Imported here: the heaviest import of the core, needed only once a tool is rendered
    # (every command reads the settings, which validate agent rows through this module).
    from jsonschema import SchemaError
    from jsonschema.validators import Draft202012Validator

    try:
        Draft202012Validator.check_schema(dict(tool.parameters))
    except SchemaError as exc:
        raise InvalidToolError(
            f"tool {tool.name}: parameters are not a valid JSON schema: {exc.message}"
        ) from None
