"""Actions: the steps a plan asks for. Plain values; ``controller.reconcile.apply`` runs them."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from uuid import UUID

from controller.core.drift import FieldChange

Cause = Literal["desired", "drift", "adopt", "relink", "config"]
"""Why an update: the row changed (desired), Vapi was edited (drift), a legacy assistant is
taken over (adopt), a number is pointed at its assistant (relink), or only the render
settings changed (config: a profile, default or ``BACKEND_URL`` change; the mass-update
guard may hold those)."""


@dataclass(frozen=True)
class CreateTool:
    tool_name: str
    body: Mapping[str, Any]
    definition_hash: str


@dataclass(frozen=True)
class AdoptTool:
    """Record an existing Vapi tool of ours (found by name and URL) in the registry."""

    tool_name: str
    vapi_id: str
    definition_hash: str


@dataclass(frozen=True)
class UpdateTool:
    tool_name: str
    vapi_id: str
    body: Mapping[str, Any]
    definition_hash: str
    changes: tuple[FieldChange, ...]
    cause: Cause
    basis: Mapping[str, Any] = field(default_factory=dict)
    """The observed body this update was planned against (see ``UpdateAssistant.basis``)."""


@dataclass(frozen=True)
class DeleteTool:
    tool_name: str
    vapi_id: str
    reason: str


@dataclass(frozen=True)
class CreateAssistant:
    org_id: UUID
    agent_id: UUID
    body: Mapping[str, Any]
    row_hash: str | None = None
    settings_hash: str | None = None
    """What the body was rendered from (see ``Baseline``)."""


@dataclass(frozen=True)
class LinkAssistant:
    """Point ``agents.vapi_assistant_id`` at an assistant already tagged for the agent."""

    org_id: UUID
    agent_id: UUID
    vapi_id: str


@dataclass(frozen=True)
class UpdateAssistant:
    org_id: UUID
    agent_id: UUID
    vapi_id: str
    patch: Mapping[str, Any]
    """Only the top-level keys that changed, each sent whole (PATCH is shallow)."""
    desired: Mapping[str, Any]
    """The full managed body, for the baseline."""
    changes: tuple[FieldChange, ...]
    cause: Cause
    basis: Mapping[str, Any] = field(default_factory=dict)
    """The observed body this update was planned against. The baseline after the write takes
    the keys sent from Vapi's answer and every other key from here, never from the answer:
    an edit made in the dashboard while the PATCH was in flight stays drift."""
    owned_tool_ids: Container[str] = frozenset()
    """The tool ids the controller owns, to take its view of ``model.toolIds``."""
    row_hash: str | None = None
    settings_hash: str | None = None
    """What the body was rendered from (see ``Baseline``)."""


@dataclass(frozen=True)
class DeleteAssistant:
    org_id: UUID
    vapi_id: str
    reason: str
    duplicate_of: str | None = None
    """Set for a late duplicate of the assistant Postgres links: the controller undoing its
    own double create, outside the prune switch and bound (at most one per agent)."""


@dataclass(frozen=True)
class BindPhoneNumber:
    """Route an inbound agent's number to its assistant: ``assistant_id`` None means the one
    created earlier in the same plan (its id is known only once Vapi answers)."""

    org_id: UUID
    agent_id: UUID
    number_id: str
    assistant_id: str | None
    previous: str | None
    """Where the number routed before (None: nowhere)."""
    cause: Cause


@dataclass(frozen=True)
class ReleasePhoneNumber:
    """Unbind a number from a managed assistant no desired inbound agent wants (prune)."""

    org_id: UUID
    number_id: str
    assistant_id: str


ToolAction = CreateTool | AdoptTool | UpdateTool | DeleteTool
AssistantAction = (
    CreateAssistant
    | LinkAssistant
    | UpdateAssistant
    | DeleteAssistant
    | BindPhoneNumber
    | ReleasePhoneNumber
)
Action = ToolAction | AssistantAction

VAPI_WRITES = (
    CreateTool,
    UpdateTool,
    DeleteTool,
    CreateAssistant,
    UpdateAssistant,
    DeleteAssistant,
    BindPhoneNumber,
    ReleasePhoneNumber,
)


def is_vapi_write(action: Action) -> bool:
    return isinstance(action, VAPI_WRITES)


@dataclass(frozen=True)
class ToolPlan:
    actions: tuple[ToolAction, ...] = ()
    invalid: Mapping[str, str] = field(default_factory=dict)
    """Tool name -> why its definition cannot be registered."""
    orphans: tuple[str, ...] = ()
    """Vapi ids of our tools no longer wanted (deleted only when pruning is allowed)."""


@dataclass(frozen=True)
class OrgPlan:
    org_id: UUID
    actions: tuple[AssistantAction, ...] = ()
    invalid: Mapping[UUID, str] = field(default_factory=dict)
    """Agent id -> why its row cannot be rendered."""
    blocked: str | None = None
    """An ownership conflict: nothing may be written for this organization."""
    orphans: tuple[str, ...] = ()
    """Vapi ids of managed assistants of this organization that no agent wants."""
    error: str | None = None
    """Planning itself failed (an internal error): nothing may be written."""
    kept: tuple[str, ...] = ()
    """Vapi ids of the assistants the plan keeps for the organization's agents."""
    stranded_numbers: tuple[tuple[str, str], ...] = ()
    """(number id, orphaned assistant id): numbers still routing to an assistant no agent
    wants (released only when pruning)."""
    held: tuple[UpdateAssistant, ...] = ()
    """Updates the mass-update guard holds (configuration-caused, over the limit)."""
    held_reason: str = ""

    @property
    def config_updates(self) -> tuple[UpdateAssistant, ...]:
        return tuple(
            a for a in self.actions if isinstance(a, UpdateAssistant) and a.cause == "config"
        )

    def holding(self, held: tuple[UpdateAssistant, ...], reason: str) -> OrgPlan:
        """The plan less ``held`` (kept aside to show in ``plan`` and ``status``)."""
        kept = tuple(a for a in self.actions if a not in held)
        return replace(self, actions=kept, held=held, held_reason=reason)

    @property
    def replaces(self) -> bool:
        """The plan creates, links or deletes: what it keeps must be confirmed in Vapi
        first (a cache may still hold an assistant another replica or the dashboard
        deleted, and choosing it would make the real one look orphaned)."""
        return any(
            isinstance(a, CreateAssistant | LinkAssistant | DeleteAssistant) for a in self.actions
        )

    @property
    def deletes(self) -> tuple[DeleteAssistant, ...]:
        """The prunes: deletions under the prune switch and bound."""
        return tuple(
            a for a in self.actions if isinstance(a, DeleteAssistant) and a.duplicate_of is None
        )

    @property
    def writes(self) -> int:
        return sum(1 for a in self.actions if is_vapi_write(a))

    def without_deletes(self) -> OrgPlan:
        pruned = self.deletes
        kept = tuple(
            a for a in self.actions if a not in pruned and not isinstance(a, ReleasePhoneNumber)
        )
        return replace(self, actions=kept)
