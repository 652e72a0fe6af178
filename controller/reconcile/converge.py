"""Converging one organization, shared by a full pass and the daemon: the planning context,
applying a plan while writes stay allowed, and the outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import Settings
from controller.core.actions import OrgPlan, ToolPlan
from controller.core.desired import DesiredState
from controller.core.outcome import ActionResult, OrgOutcome, org_outcome
from controller.core.plan import AssistantContext
from controller.reconcile.apply import Applier
from controller.reconcile.observe import ObservedState
from controller.vapi.client import VapiClient

ROLES = ("inbound", "outbound")


@dataclass
class Runtime:
    """What a reconcile needs. ``settings`` may be swapped while running (hot reload): every
    write checks the settings in force at that moment."""

    engine: AsyncEngine
    client: VapiClient
    settings: Settings

    def writes_allowed(self, org_id: UUID) -> bool:
        return self.settings.writes_enabled and not self.settings.is_paused(org_id)


def assistant_context(
    settings: Settings,
    desired: DesiredState,
    observed: ObservedState,
    tool_ids: Mapping[str, str],
    tools: ToolPlan | None = None,
) -> AssistantContext:
    invalid = tools.invalid if tools else {}
    return AssistantContext(
        tool_ids_by_role={
            role: [
                tool_ids[t.name]
                for t in desired.tools
                if t.enabled and role in t.roles and t.name in tool_ids and t.name not in invalid
            ]
            for role in ROLES
        },
        baselines=desired.baselines,
        defaults=settings.defaults,
        backend_url=settings.backend_url,
        contested_ids=contested_untagged(desired, observed),
    )


def contested_untagged(desired: DesiredState, observed: ObservedState) -> frozenset[str]:
    """Untagged assistants named by several organizations: none may adopt them. A tagged one
    has an owner; the others are blocked by the tag alone, and the owner keeps converging."""
    return frozenset(
        vid
        for vid in desired.shared_assistant_ids
        if (found := observed.assistant(vid)) is not None and not found.has_org_tag
    )


async def converge_org(
    runtime: Runtime,
    applier: Applier,
    plan: OrgPlan,
    *,
    desired: bool,
    prune_blocked: str,
) -> OrgOutcome:
    """Apply the plan's actions one by one while writes are allowed, then judge."""
    results: list[ActionResult] = []
    if not plan.blocked:
        for action in plan.actions:
            if not runtime.writes_allowed(plan.org_id):
                break
            results.append(await applier.apply(action))
    settings = runtime.settings
    outcome = org_outcome(
        plan,
        results,
        desired=desired,
        paused=settings.is_paused(plan.org_id),
        observe_only=settings.controller.mode == "observe",
        prune_blocked=prune_blocked,
    )
    quiet = outcome.state == "synced" and not outcome.writes  # a resync finding nothing
    logger.bind(org_id=str(plan.org_id), reconcile_id=applier.reconcile_id).log(
        "DEBUG" if quiet else "INFO",
        "reconciled: {state}, {writes} writes{message}",
        state=outcome.state,
        writes=outcome.writes,
        message=f": {outcome.message}" if outcome.message else "",
    )
    return outcome
