"""One full pass, for ``reconcile`` and ``plan``: a thin driver over the step chain.

Observe Vapi completely once; the account's tools first; then every organization (all of
them planned before any is applied, so the prune limit judges the pass's deletions together);
then the tools again, for the deletions that had to wait until no assistant linked them.
``plan_pass`` stops before apply and writes nothing anywhere.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import replace
from uuid import UUID

from loguru import logger

from controller.core.actions import DeleteTool, OrgPlan
from controller.core.desired import DesiredState
from controller.core.observed import ObservedState
from controller.core.outcome import OrgOutcome, PassOutcome
from controller.core.plan import PassPlan, PruneDecision, planned_tool_ids
from controller.reconcile.chain import Chain, DirectRecorder
from controller.reconcile.findings import report_findings
from controller.reconcile.observe import ObservedCache
from controller.reconcile.prune import PassPruneLimit
from controller.reconcile.runtime import Runtime
from desired_state.load import has_phone_numbers, load_desired, load_tool_ids

Progress = Callable[[int, int], None]
"""Told (organizations done, organizations planned) as a pass goes."""

NO_DELETES = PassPruneLimit(PruneDecision(False, 0, "deletions wait for the pass's decision"))


async def plan_pass(runtime: Runtime, *, org_ids: Collection[UUID] | None = None) -> PassPlan:
    """What a pass would do, writing nothing anywhere."""
    chain = await _observed_chain(runtime)
    tools = await chain.reconcile_tools(
        await _load(runtime, ()), reconcile_id="plan", limit=NO_DELETES, apply=False
    )
    desired = await _load(runtime, org_ids)
    desired = replace(desired, tool_ids=planned_tool_ids(desired.tool_ids, tools.plan))
    orgs = await _prepare(chain, desired, org_ids)
    orgs = {org_id: await chain.hold_rollout(p) for org_id, p in orgs.items()}
    limit = _pass_limit(runtime, chain.cache.state, orgs, tool_deletes=len(tools.plan.orphans))
    if not limit.decision.allowed:
        orgs = {org_id: p.without_deletes() for org_id, p in orgs.items()}
    return PassPlan(tools.plan, orgs, limit.decision)


async def reconcile_pass(
    runtime: Runtime,
    *,
    org_ids: Collection[UUID] | None = None,
    on_progress: Progress | None = None,
    gate: Awaitable[None] | None = None,
) -> PassOutcome:
    """``gate``: a check that must pass before anything is written (``reconcile`` gives the
    set-up check, read beside Vapi's first listing); its error ends the pass."""
    reconcile_id = uuid.uuid4().hex[:12]
    outcome = PassOutcome(reconcile_id)
    # Independent reads at once, each on its own connection (start-up's critical path:
    # issue 17); nothing is written before ``gate`` (the set-up check) passed.
    chain, for_tools = await _read_beside(gate, _observed_chain(runtime), _load(runtime, ()))
    await report_findings(runtime.engine)
    loading = asyncio.ensure_future(_load(runtime, org_ids))  # read while the tools are written
    try:
        tools = await chain.reconcile_tools(for_tools, reconcile_id=reconcile_id, limit=NO_DELETES)
    except BaseException:
        loading.cancel()
        raise
    desired = replace(await loading, tool_ids=await _tool_ids(runtime))  # ids as written
    plans = await _prepare(chain, desired, org_ids)
    limit = _pass_limit(runtime, chain.cache.state, plans, tool_deletes=len(tools.plan.orphans))
    outcome.prune_blocked = "" if limit.decision.allowed else limit.decision.reason
    slots = asyncio.Semaphore(runtime.settings.controller.concurrency)
    recorder = DirectRecorder(runtime)
    done = 0
    if on_progress:
        on_progress(done, len(plans))

    async def finish(plan: OrgPlan) -> OrgOutcome:
        nonlocal done
        async with slots:
            result = await chain.finish_org(
                plan, desired, reconcile_id=reconcile_id, limit=limit, recorder=recorder
            )
        done += 1
        if on_progress:
            on_progress(done, len(plans))
        return result

    outcome.orgs = list(await asyncio.gather(*(finish(p) for p in plans.values())))
    pruned = await chain.reconcile_tools(
        await _load(runtime, ()), reconcile_id=reconcile_id, limit=limit, deletes_only=True
    )
    outcome.tool_errors = list(dict.fromkeys(tools.errors + pruned.errors))
    logger.bind(reconcile_id=reconcile_id).info(
        "pass finished: {orgs} organizations {states}, {calls} Vapi calls",
        orgs=len(outcome.orgs),
        states=dict(outcome.states()),
        calls=sum(runtime.client.calls.values()),
    )
    return outcome


async def _read_beside(
    gate: Awaitable[None] | None, observing: Awaitable[Chain], loading: Awaitable[DesiredState]
) -> tuple[Chain, DesiredState]:
    """Both reads, beside the gate. When one fails the others are cancelled, and the gate's
    error comes first: a set-up that is wrong says so, not how a read tripped over it."""
    checked = asyncio.ensure_future(gate if gate is not None else asyncio.sleep(0))
    chain, desired = asyncio.ensure_future(observing), asyncio.ensure_future(loading)
    try:
        await asyncio.gather(checked, chain, desired)
    except BaseException:
        for task in (chain, desired):
            task.cancel()
        await asyncio.gather(chain, desired, return_exceptions=True)
        if not checked.done():
            await asyncio.wait([checked])
        failed = None if checked.cancelled() else checked.exception()
        if failed is not None:
            raise failed from None
        raise
    return chain.result(), desired.result()


async def _observed_chain(runtime: Runtime) -> Chain:
    async with runtime.engine.connect() as conn:
        phones = await has_phone_numbers(conn)
    cache = ObservedCache(runtime.client, phones=phones)
    await cache.relist()
    return Chain(runtime, cache)


async def _tool_ids(runtime: Runtime) -> dict[str, str]:
    async with runtime.engine.connect() as conn:
        return await load_tool_ids(conn)


async def _load(runtime: Runtime, org_ids: Collection[UUID] | None) -> DesiredState:
    async with runtime.engine.connect() as conn:
        return await load_desired(conn, org_ids=org_ids)


async def _prepare(
    chain: Chain, desired: DesiredState, org_ids: Collection[UUID] | None
) -> dict[UUID, OrgPlan]:
    """Plans of every organization to visit: desired ones, plus any with assistants or a
    status row left to settle."""
    visit = set(desired.orgs) | chain.cache.state.tagged_org_ids() | set(desired.known_org_ids)
    if org_ids is not None:
        visit &= set(org_ids)
    ordered = sorted(visit, key=str)
    slots = asyncio.Semaphore(chain.runtime.settings.controller.concurrency)

    async def prepare(org_id: UUID) -> OrgPlan:
        async with slots:
            return await chain.prepare_org(org_id, desired)

    return dict(zip(ordered, await asyncio.gather(*(prepare(o) for o in ordered)), strict=True))


def _pass_limit(
    runtime: Runtime, observed: ObservedState, plans: Mapping[UUID, OrgPlan], *, tool_deletes: int
) -> PassPruneLimit:
    """The pass's one prune decision, over every deletion it planned (tools included)."""
    planned = sum(len(p.deletes) for p in plans.values())
    if runtime.settings.controller.prune:
        planned += tool_deletes
    return PassPruneLimit.judged(
        planned=planned, observed=observed, bounds=runtime.settings.prune_bounds
    )


__all__ = ["DeleteTool", "PassPlan", "Progress", "plan_pass", "reconcile_pass"]
