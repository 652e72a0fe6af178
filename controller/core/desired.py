"""Desired state as plain frozen values, as ``desired_state`` loads it from Postgres."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cached_property
from typing import Any
from uuid import UUID


def fingerprint(value: Any) -> str:
    """A stable SHA-256 of a JSON-able value (key order does not matter)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)  # slots: every agent is held by the memos of a resync
class DesiredAgent:
    agent_id: UUID
    org_id: UUID
    role: str
    name: str
    system_prompt: str
    first_message: str | None = None
    voice: str | None = None
    voice_provider: str | None = None
    language: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_call_duration: int | None = None
    vapi_assistant_id: str | None = None
    voice_stability: float | None = None
    """ElevenLabs stability, 0..1 (optional column)."""
    voice_similarity_boost: float | None = None
    """ElevenLabs similarityBoost, 0..1 (optional column)."""
    vapi_phone_number_id: str | None = None
    """The Vapi phone number of this agent (optional column)."""


def row_hash(agent: DesiredAgent) -> str:
    """What of an agent row a body is rendered from (its link to Vapi aside)."""
    values = {
        f.name: getattr(agent, f.name) for f in fields(agent) if f.name != "vapi_assistant_id"
    }
    return fingerprint({k: str(v) if isinstance(v, UUID) else v for k, v in values.items()})


@dataclass(frozen=True)
class DesiredTool:
    name: str
    description: str
    parameters: Mapping[str, Any]
    path: str
    is_async: bool = True
    roles: tuple[str, ...] = ("inbound", "outbound")
    enabled: bool = True

    @cached_property
    def definition_hash(self) -> str:
        return fingerprint(
            {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
                "path": self.path,
                "async": self.is_async,
            }
        )


ToolRow = tuple[str, str, str | None]
"""An ``org_tools`` row: tool name, Vapi tool id, definition hash."""

TOOL_ROW_UNIT, TOOL_ROW_RECORD = "\x1f", "\x1e"
"""Separators of ``tool_rows_digest``: between a row's fields, between rows."""


def tool_rows_digest(rows: Iterable[ToolRow]) -> str | None:
    """A digest of a set of ``org_tools`` rows (None: no row), as ``desired_state.load``
    computes it in SQL from the table: rows by tool name in code point order (``collate
    "C"``), fields and rows joined by control characters, MD5 (a change detector, not a
    security measure)."""
    ordered = sorted(rows, key=lambda row: row[0])
    if not ordered:
        return None
    text = TOOL_ROW_RECORD.join(
        TOOL_ROW_UNIT.join((name, vapi_id, digest or "")) for name, vapi_id, digest in ordered
    )
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class DesiredOrg:
    org_id: UUID
    agents: tuple[DesiredAgent, ...] = ()


AgentRow = Sequence[Any]
"""One agent row as read, its columns in the order the load asked for them."""


class OrgRows(Mapping[UUID, DesiredOrg]):
    """Organizations as read: each made into a ``DesiredOrg`` on first use, from its agent
    rows (``agent``: one row to a ``DesiredAgent``). A resync reads every organization of a
    batch, and most are answered by comparing their rows with those of an earlier visit
    (``controller.reconcile.quiet``): those are never made into objects."""

    def __init__(
        self,
        rows: Mapping[UUID, tuple[AgentRow, ...]],
        agent: Callable[[AgentRow], DesiredAgent],
    ) -> None:
        self._rows = rows
        self._agent = agent
        self._made: dict[UUID, DesiredOrg] = {}

    def __getitem__(self, org_id: UUID) -> DesiredOrg:
        made = self._made.get(org_id)
        if made is None:
            agents = tuple(map(self._agent, self._rows[org_id]))
            made = self._made[org_id] = DesiredOrg(org_id, agents)
        return made

    def __contains__(self, org_id: object) -> bool:
        return org_id in self._rows

    def __iter__(self) -> Iterator[UUID]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self, org_id: UUID) -> tuple[AgentRow, ...] | None:
        return self._rows.get(org_id)


@dataclass(frozen=True)
class Baseline:
    """What the controller last wrote to one Vapi object, and what Vapi answered."""

    vapi_id: str
    desired_hash: str | None
    observed_hash: str | None
    row_hash: str | None = None
    """Fingerprint of the agent row the last write was rendered from."""
    settings_hash: str | None = None
    """Fingerprint of the render settings (profile, ``BACKEND_URL``) it was rendered with."""


@dataclass(frozen=True)
class DesiredState:
    """A consistent snapshot: organizations to converge, the tool definitions, the registry."""

    orgs: Mapping[UUID, DesiredOrg] = field(default_factory=dict)
    tools: tuple[DesiredTool, ...] = ()
    tool_ids: Mapping[str, str] = field(default_factory=dict)
    """Tool name -> Vapi tool id, from the controller's registry."""
    baselines: Mapping[str, Baseline] = field(default_factory=dict)
    """Vapi id -> baseline of the controller's last write."""
    known_org_ids: frozenset[UUID] = frozenset()
    """Every organization the controller has a status row for (to notice removed ones)."""
    intents: Mapping[UUID, datetime] = field(default_factory=dict)
    """Agent id -> when a create was attempted whose outcome is not known yet."""
    shared_assistant_ids: frozenset[str] = frozenset()
    """Assistant ids that agents of more than one active organization name (from all rows,
    not only the organizations in this snapshot)."""
    contested_numbers: frozenset[str] = frozenset()
    """Phone numbers named by inbound agents of more than one organization."""
    org_tools: Mapping[UUID, str] = field(default_factory=dict)
    """What ``org_tools`` holds now for the organizations in this snapshot, as
    ``tool_rows_digest`` of its rows (an organization with none is absent)."""
    org_tools_hashed: bool = True
    """The platform's ``org_tools`` keeps ``definition_hash`` (the live table has no such
    column: its rows are compared without it)."""

    def rows_of(self, org_id: UUID) -> object:
        """What the organization was read from, to compare with an earlier snapshot's: its
        rows as read (``OrgRows``), else the organization itself (None: not desired)."""
        orgs = self.orgs
        return orgs.rows(org_id) if isinstance(orgs, OrgRows) else orgs.get(org_id)

    @cached_property
    def tool_rows_by_roles(self) -> dict[frozenset[str], tuple[frozenset[ToolRow], str | None]]:
        """A memo of ``controller.core.outcome.links_to_record``: the agents' roles -> the
        ``org_tools`` rows an organization with them links, and their digest as stored
        (``tools``, ``tool_ids`` and ``org_tools_hashed`` are the snapshot's)."""
        return {}
