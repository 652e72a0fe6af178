"""One full pass: tools for the whole account, then every organization, then tool pruning.

``plan_pass`` stops after planning (``vapi-reconciler plan``); ``reconcile_pass`` applies.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from uuid import UUID

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import Settings
from controller.core.actions import (
    AdoptTool,
    CreateTool,
    DeleteTool,
    OrgPlan,
    ToolPlan,
)
from controller.core.desired import DesiredState
from controller.core.outcome import OrgOutcome, PassOutcome, org_outcome
from controller.core.plan import (
    AssistantContext,
    PruneDecision,
    contested_assistant_ids,
    guard_prune,
    plan_org,
    plan_tools,
)
from controller.reconcile.apply import Applier
from controller.reconcile.observe import ObservedState, observe, org_ids_to_visit
from controller.reconcile.status import record_org_outcome
from controller.vapi.client import VapiClient
from desired_state.load import load_desired, load_tool_ids

PENDING_TOOL_ID = "(new:{name})"


@dataclass(frozen=True)
class Runtime:
    engine: AsyncEngine
    client: VapiClient
    settings: Settings


@dataclass(frozen=True)
class PassPlan:
    desired: DesiredState
    observed: ObservedState
    tools: ToolPlan
    orgs: Mapping[UUID, OrgPlan]
    prune: PruneDecision = field(default_factory=lambda: PruneDecision(True, 0))

    @property
    def has_changes(self) -> bool:
        return bool(self.tools.actions) or any(
            p.actions or p.blocked or p.invalid for p in self.orgs.values()
        )


async def plan_pass(runtime: Runtime, *, org_ids: Collection[UUID] | None = None) -> PassPlan:
    """What a pass would do, writing nothing anywhere."""
    desired, observed = await _load_and_observe(runtime, org_ids)
    tools = _plan_tools(runtime.settings, desired, observed)
    tool_ids = dict(desired.tool_ids)
    for action in tools.actions:
        if isinstance(action, AdoptTool):
            tool_ids[action.tool_name] = action.vapi_id
        elif isinstance(action, CreateTool):
            tool_ids[action.tool_name] = PENDING_TOOL_ID.format(name=action.tool_name)
    return _plan_orgs(runtime.settings, desired, observed, tools, tool_ids, org_ids)


async def reconcile_pass(
    runtime: Runtime, *, org_ids: Collection[UUID] | None = None
) -> PassOutcome:
    reconcile_id = uuid.uuid4().hex[:12]
    settings = runtime.settings
    applier = Applier(runtime.client, runtime.engine, reconcile_id)
    outcome = PassOutcome(reconcile_id)
    desired, observed = await _load_and_observe(runtime, org_ids)
    tools = _plan_tools(settings, desired, observed)
    tool_ids = dict(desired.tool_ids)
    outcome.tool_errors = [f"{name}: {why}" for name, why in tools.invalid.items()]
    if settings.writes_enabled:
        for action in tools.actions:
            if isinstance(action, DeleteTool):
                continue
            result = await applier.apply(action)
            if not result.ok:
                outcome.tool_errors.append(f"{result.description}: {result.error}")
        async with runtime.engine.connect() as conn:
            tool_ids = await load_tool_ids(conn)
    plan = _plan_orgs(settings, desired, observed, tools, tool_ids, org_ids)
    outcome.prune_blocked = "" if plan.prune.allowed else plan.prune.reason
    limit = asyncio.Semaphore(settings.controller.concurrency)

    async def visit(org_plan: OrgPlan) -> OrgOutcome:
        async with limit:
            return await _reconcile_org(runtime, applier, plan, org_plan, tool_ids)

    outcome.orgs = list(await asyncio.gather(*(visit(p) for p in plan.orgs.values())))
    if settings.writes_enabled and plan.prune.allowed:
        for action in tools.actions:
            if isinstance(action, DeleteTool):
                result = await applier.apply(action)
                if not result.ok:
                    outcome.tool_errors.append(f"{result.description}: {result.error}")
    logger.bind(reconcile_id=reconcile_id).info(
        "pass finished: {orgs} organizations {states}, {calls} Vapi calls",
        orgs=len(outcome.orgs),
        states=dict(outcome.states()),
        calls=sum(runtime.client.calls.values()),
    )
    return outcome


async def _reconcile_org(
    runtime: Runtime,
    applier: Applier,
    plan: PassPlan,
    org_plan: OrgPlan,
    tool_ids: Mapping[str, str],
) -> OrgOutcome:
    settings = runtime.settings
    paused = settings.is_paused(org_plan.org_id)
    results = []
    if settings.writes_enabled and not paused and not org_plan.blocked:
        results = [await applier.apply(action) for action in org_plan.actions]
    outcome = org_outcome(
        org_plan,
        results,
        desired=org_plan.org_id in plan.desired.orgs,
        paused=paused,
        observe_only=settings.controller.mode == "observe",
        prune_blocked="" if plan.prune.allowed else plan.prune.reason,
    )
    await record_org_outcome(
        runtime.engine,
        outcome,
        desired=plan.desired.orgs.get(org_plan.org_id),
        tools=plan.desired.tools,
        tool_ids=tool_ids,
    )
    logger.bind(org_id=str(org_plan.org_id), reconcile_id=applier.reconcile_id).info(
        "reconciled: {state}, {writes} writes{message}",
        state=outcome.state,
        writes=outcome.writes,
        message=f": {outcome.message}" if outcome.message else "",
    )
    return outcome


async def _load_and_observe(
    runtime: Runtime, org_ids: Collection[UUID] | None
) -> tuple[DesiredState, ObservedState]:
    async with runtime.engine.connect() as conn:
        desired = await load_desired(conn, org_ids=org_ids)
    return desired, await observe(runtime.client)


def _plan_tools(settings: Settings, desired: DesiredState, observed: ObservedState) -> ToolPlan:
    return plan_tools(
        tools=desired.tools,
        observed=observed.tools,
        registry=desired.tool_ids,
        baselines=desired.baselines,
        backend_url=settings.backend_url,
        prune=settings.controller.prune,
    )


def _contested_untagged(desired: DesiredState, observed: ObservedState) -> frozenset[str]:
    """Untagged assistants named by several organizations: none may adopt them. A tagged one
    has an owner; the others are blocked by the tag alone, and the owner keeps converging."""
    return frozenset(
        vid
        for vid in contested_assistant_ids(desired.orgs.values())
        if (found := observed.assistant(vid)) is not None and not found.has_org_tag
    )


def _plan_orgs(
    settings: Settings,
    desired: DesiredState,
    observed: ObservedState,
    tools: ToolPlan,
    tool_ids: Mapping[str, str],
    org_ids: Collection[UUID] | None,
) -> PassPlan:
    context = AssistantContext(
        tool_ids_by_role={
            role: [
                tool_ids[t.name]
                for t in desired.tools
                if t.enabled
                and role in t.roles
                and t.name in tool_ids
                and t.name not in tools.invalid
            ]
            for role in ("inbound", "outbound")
        },
        baselines=desired.baselines,
        defaults=settings.defaults,
        backend_url=settings.backend_url,
        contested_ids=_contested_untagged(desired, observed),
    )
    visit = org_ids_to_visit(desired.orgs, observed, desired.known_org_ids)
    if org_ids is not None:
        visit = [org for org in visit if org in set(org_ids)]
    plans = {
        org_id: plan_org(
            org_id=org_id,
            desired=desired.orgs.get(org_id),
            observed=observed.for_org(org_id, desired.orgs.get(org_id)),
            context=context,
            prune=settings.controller.prune,
        )
        for org_id in visit
    }
    decision = guard_prune(
        planned_deletes=sum(len(p.deletes) for p in plans.values())
        + sum(isinstance(a, DeleteTool) for a in tools.actions),
        managed_total=observed.managed_count(),
        max_count=settings.controller.max_prune_per_pass,
        max_fraction=settings.controller.max_prune_fraction,
    )
    if not decision.allowed:
        plans = {org_id: p.without_deletes() for org_id, p in plans.items()}
    return PassPlan(desired, observed, tools, plans, decision)
