"""Outcomes: what a reconcile of one organization came to, derived from its plan and the
results of its actions. Pure: the status row is written by ``controller.reconcile.status``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from controller.core.actions import OrgPlan

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
    if prune_blocked and plan.orphans:
        return done("blocked", prune_blocked, reason="prune_guard")
    if orphans > 0:
        return done("synced", f"{orphans} orphaned assistant(s) left alone (prune = false)")
    return done("synced", "")
