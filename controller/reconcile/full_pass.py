"""One full pass: tools for the whole account, then every organization, then tool pruning.

``plan_pass`` stops after planning (``vapi-reconciler plan``); ``reconcile_pass`` applies.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from loguru import logger

from controller.config import Settings
from controller.core.actions import (
    AdoptTool,
    CreateTool,
    DeleteTool,
    OrgPlan,
    ToolAction,
    ToolPlan,
)
from controller.core.desired import DesiredState
from controller.core.outcome import OrgOutcome, PassOutcome
from controller.core.plan import PruneDecision, guard_prune, plan_org, plan_tools
from controller.reconcile.apply import Applier
from controller.reconcile.converge import Runtime, assistant_context, converge_org
from controller.reconcile.findings import report_findings
from controller.reconcile.observe import ObservedState, observe, org_ids_to_visit
from controller.reconcile.status import Recorded, record_outcomes
from desired_state.load import load_desired, load_tool_ids

PENDING_TOOL_ID = "(new:{name})"


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
    return plan_from(runtime.settings, desired, observed, org_ids)


def plan_from(
    settings: Settings,
    desired: DesiredState,
    observed: ObservedState,
    org_ids: Collection[UUID] | None = None,
) -> PassPlan:
    """The plan of a pass over a snapshot of both sides. Pure."""
    tools = plan_tools_for(settings, desired, observed)
    tool_ids = dict(desired.tool_ids)
    for action in tools.actions:
        if isinstance(action, AdoptTool):
            tool_ids[action.tool_name] = action.vapi_id
        elif isinstance(action, CreateTool):
            tool_ids[action.tool_name] = PENDING_TOOL_ID.format(name=action.tool_name)
    return _plan_orgs(settings, desired, observed, tools, tool_ids, org_ids)


Progress = Callable[[int, int], None]
"""Told (organizations done, organizations planned) as a pass goes."""


async def reconcile_pass(
    runtime: Runtime,
    *,
    org_ids: Collection[UUID] | None = None,
    on_progress: Progress | None = None,
) -> PassOutcome:
    reconcile_id = uuid.uuid4().hex[:12]
    outcome = PassOutcome(reconcile_id)
    await report_findings(runtime.engine)
    desired, observed = await _load_and_observe(runtime, org_ids)
    applier = Applier(runtime.client, runtime.engine, reconcile_id, observed)
    tools = plan_tools_for(runtime.settings, desired, observed)
    tool_ids = dict(desired.tool_ids)
    outcome.tool_errors = [f"{name}: {why}" for name, why in tools.invalid.items()]
    if runtime.settings.writes_enabled:
        creates = [a for a in tools.actions if not isinstance(a, DeleteTool)]
        outcome.tool_errors += await _apply_tools(applier, creates)
        async with runtime.engine.connect() as conn:
            tool_ids = await load_tool_ids(conn)
    plan = _plan_orgs(runtime.settings, desired, observed, tools, tool_ids, org_ids)
    outcome.prune_blocked = "" if plan.prune.allowed else plan.prune.reason
    limit = asyncio.Semaphore(runtime.settings.controller.concurrency)
    done = 0
    if on_progress:
        on_progress(done, len(plan.orgs))

    async def visit(org_plan: OrgPlan) -> OrgOutcome:
        async with limit:
            result = await converge_org(
                runtime,
                applier,
                org_plan,
                desired=org_plan.org_id in desired.orgs,
                prune_blocked=outcome.prune_blocked,
            )
            judged = Recorded.judged(result, desired, tool_ids)
            async with runtime.engine.begin() as conn:
                await record_outcomes(conn, [judged])
            nonlocal done
            done += 1
            if on_progress:
                on_progress(done, len(plan.orgs))
            return result

    outcome.orgs = list(await asyncio.gather(*(visit(p) for p in plan.orgs.values())))
    if runtime.settings.writes_enabled and plan.prune.allowed:
        deletes = [a for a in tools.actions if isinstance(a, DeleteTool)]
        outcome.tool_errors += await _apply_tools(applier, deletes)
    logger.bind(reconcile_id=reconcile_id).info(
        "pass finished: {orgs} organizations {states}, {calls} Vapi calls",
        orgs=len(outcome.orgs),
        states=dict(outcome.states()),
        calls=sum(runtime.client.calls.values()),
    )
    return outcome


async def _apply_tools(applier: Applier, actions: Sequence[ToolAction]) -> list[str]:
    errors: list[str] = []
    for action in actions:
        result = await applier.apply(action)
        if not result.ok:
            errors.append(f"{result.description}: {result.error}")
    return errors


async def _load_and_observe(
    runtime: Runtime, org_ids: Collection[UUID] | None
) -> tuple[DesiredState, ObservedState]:
    async with runtime.engine.connect() as conn:
        desired = await load_desired(conn, org_ids=org_ids)
    return desired, await observe(runtime.client)


def plan_tools_for(settings: Settings, desired: DesiredState, observed: ObservedState) -> ToolPlan:
    return plan_tools(
        tools=desired.tools,
        observed=observed.tools,
        registry=desired.tool_ids,
        baselines=desired.baselines,
        backend_url=settings.backend_url,
        prune=settings.controller.prune,
    )


def _plan_orgs(
    settings: Settings,
    desired: DesiredState,
    observed: ObservedState,
    tools: ToolPlan,
    tool_ids: Mapping[str, str],
    org_ids: Collection[UUID] | None,
) -> PassPlan:
    context = assistant_context(settings, desired, observed, tool_ids, tools)
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
