"""The core's own settings: what rendering and planning take from the configuration.

Why: the pure core must not depend on the shell's configuration model (``controller.config``
builds on this one, not the other way round). ``RenderDefaults`` is validated exactly like an
agent row, so a typo such as ``voice_provider = "elevenlab"`` is refused when the file is
read, never discovered later as a crash in the middle of a reconcile. Must not do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.core.desired import DesiredAgent
from controller.core.render import InvalidAgentError, validate_agent


class RenderDefaults(BaseModel):
    """A render profile, as data: where each field comes from and its default.

    The ``default`` profile is ``[defaults]`` in config.toml; ``voxanne`` is ``VOXANNE``
    (what the platform's own sync sends, ``platform/SYNC.md``), each key overridable under
    ``[render.voxanne]``. The renderer reads these values and has no branch per profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_provider: str = Field(default="openai", min_length=1)
    model: str = Field(default="gpt-4o", min_length=1)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=250, ge=50, le=10000)
    voice_provider: str = "vapi"
    voice: str = "Elliot"
    language: str = Field(default="en-US", min_length=1)
    transcriber_provider: str = Field(default="deepgram", min_length=1)
    transcriber_model: str = Field(default="nova-2", min_length=1)
    max_duration_seconds: int = Field(default=600, ge=10, le=43200)
    webhook_path: str = Field(default="/api/vapi/webhook", pattern=r"^/")
    model_from_row: bool = True
    """True: ``agents.model`` (else ``model``) decides the model; False: always ``model``."""
    sampling_from_row: bool = True
    """True: send temperature and maxTokens (rows, else these defaults); False: not owned."""
    name_when_empty: str = ""
    """Sent when ``agents.name`` is empty ("" : an empty name is an invalid row)."""
    first_message: str = ""
    """Sent when ``agents.first_message`` is null or empty ("" : the greeting is cleared)."""
    webhook_field: Literal["server.url", "serverUrl"] = "server.url"
    """Where the webhook goes: ``server.url``, or the legacy top-level ``serverUrl``."""
    server_messages: tuple[str, ...] = ()
    """``serverMessages`` sent (empty: not owned, Vapi's default list stays)."""

    @model_validator(mode="after")
    def _valid_as_an_agent_row(self) -> RenderDefaults:
        """Every default fills an agent's field: it must pass the checks a row passes."""
        row = DesiredAgent(
            agent_id=UUID(int=1),
            org_id=UUID(int=1),
            role="inbound",
            name=self.name_when_empty or "defaults",
            system_prompt="defaults",
            voice=self.voice,
            voice_provider=self.voice_provider,
            language=self.language,
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            max_call_duration=self.max_duration_seconds,
        )
        try:
            validate_agent(row)
        except InvalidAgentError as exc:
            raise ValueError(str(exc)) from None
        return self


VOXANNE = RenderDefaults(
    model_provider="openai",
    model="gpt-4",
    model_from_row=False,
    sampling_from_row=False,
    voice_provider="vapi",
    voice="Rohan",
    language="en",
    transcriber_provider="deepgram",
    transcriber_model="nova-2",
    max_duration_seconds=600,
    webhook_path="/api/vapi/webhook",
    name_when_empty="CallWaiting AI Outbound",
    first_message="Hello! This is CallWaiting AI calling.",
    webhook_field="serverUrl",
    server_messages=("function-call", "hang", "status-update", "end-of-call-report", "transcript"),
)
"""What the platform's own sync sends (``platform/SYNC.md``), field for field."""


@dataclass(frozen=True)
class PruneBounds:
    """How much a pass (or a window of the daemon's time) may delete."""

    max_count: int
    max_fraction: float
