"""Outcomes: what a reconcile of one organization came to, derived from its plan and the
results of its actions. Pure: the status row is written by ``controller.reconcile.status``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from controller.core.actions import OrgPlan, ToolPlan
from controller.core.desired import (
    DesiredOrg,
    DesiredState,
    DesiredTool,
    ToolRow,
    tool_rows_digest,
)

State = Literal["synced", "progressing", "failed", "paused", "blocked"]
Retry = Literal["resync", "backoff", "on_change"]
Reason = Literal[
    "validation",
    "vapi_rejected",
    "vapi_key_rejected",
    "vapi_unavailable",
    "rate_limited",
    "ownership_conflict",
    "prune_guard",
    "observe_mode",
    "paused",
    "internal_error",
    "lease_lost",
    "vapi_object_gone",
    "mass_update_guard",
]
"""Why an organization is not synced (CONTRACT: the alert's ``reason``)."""
"""When to come back: at the resync interval, after a backoff, or not until a change."""


@dataclass(frozen=True)
class ActionResult:
    action: str
    """The action's type name, e.g. ``UpdateAssistant``."""
    description: str
    ok: bool
    write: bool
    """The action was a Vapi write (not a registry-only step)."""
    error: str = ""
    transient: bool = False
    """The failure may clear by itself (rate limit, 5xx, unknown outcome)."""
    reason: Reason | None = None


@dataclass(frozen=True)
class OrgOutcome:
    org_id: UUID
    state: State
    message: str
    writes: int = 0
    desired: bool = True
    orphans: int = 0
    retry: Retry = "resync"
    reason: Reason | None = None

    @property
    def failed(self) -> bool:
        """An attempt that did not work (not a pause, not observe mode)."""
        return self.state in ("failed", "blocked") or (
            self.state == "progressing" and self.reason != "observe_mode"
        )

    @property
    def converged(self) -> bool:
        return self.state in ("synced", "paused")

    @classmethod
    def abandoned(cls, org_id: UUID, writes: int) -> OrgOutcome:
        """The claim may have expired before a write: the rest of the plan was not sent;
        whoever holds the organization now reconciles it."""
        return cls(
            org_id,
            "progressing",
            "abandoned: the claim's lease may have expired before a write",
            writes,
            retry="backoff",
            reason="lease_lost",
        )

    @classmethod
    def internal_error(cls, org_id: UUID, what: str) -> OrgOutcome:
        """An unexpected exception in the reconcile of one organization: a bug, reported as
        a failure of that organization alone and retried with backoff."""
        return cls(
            org_id,
            "failed",
            f"internal error: {what}",
            retry="backoff",
            reason="internal_error",
        )


@dataclass(frozen=True)
class ToolsOutcome:
    """What a reconcile of the account's tools came to."""

    plan: ToolPlan
    errors: tuple[str, ...] = ()
    relink: bool = False
    """Tool ids changed (a tool created or adopted): every organization must relink."""


@dataclass
class PassOutcome:
    reconcile_id: str
    orgs: list[OrgOutcome] = field(default_factory=list)
    tool_errors: list[str] = field(default_factory=list)
    prune_blocked: str = ""

    @property
    def converged(self) -> bool:
        return not self.tool_errors and all(o.converged for o in self.orgs if o.desired)

    def states(self) -> Counter[str]:
        return Counter(o.state for o in self.orgs)


def org_outcome(
    plan: OrgPlan,
    results: Sequence[ActionResult],
    *,
    desired: bool,
    paused: bool,
    observe_only: bool,
    prune_blocked: str,
) -> OrgOutcome:
    writes = sum(1 for r in results if r.ok and r.write)
    pending = len(plan.actions)

    orphans = len(plan.orphans) - sum(1 for r in results if r.ok and r.action == "DeleteAssistant")

    def done(
        state: State, message: str, retry: Retry = "resync", reason: Reason | None = None
    ) -> OrgOutcome:
        return OrgOutcome(
            plan.org_id, state, message, writes, desired, max(orphans, 0), retry, reason
        )

    if plan.error:
        return done("failed", plan.error, "backoff", "internal_error")
    if plan.blocked:
        return done(
            "blocked", f"ownership conflict: {plan.blocked}", "on_change", "ownership_conflict"
        )
    if paused:
        message = f"paused; {pending} changes pending" if pending else "paused"
        return done("paused", message, reason="paused")
    if observe_only and pending:
        return done(
            "progressing", f"observe mode: {pending} changes pending", reason="observe_mode"
        )
    failures = [r for r in results if not r.ok]
    problems = [f"{r.description}: {r.error}" for r in failures]
    problems += [f"agent {agent}: {why}" for agent, why in plan.invalid.items()]
    if failures and all(r.transient for r in failures) and not plan.invalid:
        return done("progressing", "; ".join(problems), "backoff", failures[0].reason)
    if problems:
        reason = "validation" if plan.invalid else failures[0].reason
        return done("failed", "; ".join(problems), "on_change", reason)
    if plan.held:
        return done("blocked", plan.held_reason, reason="mass_update_guard")
    if prune_blocked and plan.orphans:
        return done("blocked", prune_blocked, reason="prune_guard")
    if orphans > 0:
        routed = "".join(
            f"; phone number {number} still routes to orphan {assistant}"
            for number, assistant in plan.stranded_numbers
        )
        return done("synced", f"{orphans} orphaned assistant(s) left alone (prune = false){routed}")
    return done("synced", "")


def links_to_record(
    outcome: OrgOutcome,
    desired: DesiredState,
    tool_ids: Mapping[str, str],
    org: DesiredOrg | None = None,
) -> frozenset[ToolRow] | None:
    """The ``org_tools`` rows the organization should hold now, or None to leave them: they
    are rewritten only for a synced organization, and only when they differ from what the
    snapshot read. ``org``: the organization, where the caller holds it already (else the
    snapshot's)."""
    org = org or desired.orgs.get(outcome.org_id)
    if outcome.state != "synced" or org is None:
        return None
    roles = frozenset(agent.role for agent in org.agents)
    # the same for every organization with these roles: computed once per snapshot
    memo = desired.tool_rows_by_roles if tool_ids is desired.tool_ids else {}
    if roles not in memo:
        rows = linked_tools(org, desired.tools, tool_ids)
        stored = rows if desired.org_tools_hashed else {(n, i, None) for n, i, _ in rows}
        memo[roles] = rows, tool_rows_digest(stored)
    rows, digest = memo[roles]
    return None if digest == desired.org_tools.get(outcome.org_id) else rows


def linked_tools(
    desired: DesiredOrg, tools: Sequence[DesiredTool], tool_ids: Mapping[str, str]
) -> frozenset[ToolRow]:
    """The tools linked into at least one of the organization's assistants."""
    roles = {agent.role for agent in desired.agents}
    return frozenset(
        (tool.name, tool_ids[tool.name], tool.definition_hash)
        for tool in tools
        if tool.enabled and tool.name in tool_ids and roles & set(tool.roles)
    )
