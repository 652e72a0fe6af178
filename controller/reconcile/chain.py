"""The reconcile step chain: the one place a reconcile is written. Open this file first.

Every driver runs the same steps, top to bottom, each a short method with early returns:

    confirm -> plan -> guard -> apply -> judge -> record

``reconcile_org`` does that for one organization, ``reconcile_tools`` for the account's
tools. ``vapi-reconciler reconcile`` (``full_pass.reconcile_pass``), ``plan``
(``full_pass.plan_pass``, which stops before apply) and the daemon (one claimed work row at a
time) are thin drivers over these methods. Decisions are made by the pure core
(``controller.core.plan``); this file only sequences I/O around them.

Must not: hold a database transaction across a Vapi call; write when the settings in force
(read again before every write) forbid it; let anything unexpected escape from one
organization's reconcile: the chain's edge turns it into a ``failed`` outcome with reason
``internal_error``, logged with its traceback, so one organization never stops the others.
Postgres and Vapi outages do escape: the driver waits for them to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from loguru import logger

from controller.core.actions import CreateTool, DeleteTool, OrgPlan, ToolAction
from controller.core.desired import DesiredOrg, DesiredState
from controller.core.keys import TOOLS
from controller.core.observed import ObservedAssistant, ObservedPhoneNumber, ObservedState
from controller.core.outcome import (
    ActionResult,
    OrgOutcome,
    ToolsOutcome,
    links_to_record,
    org_outcome,
)
from controller.core.plan import (
    AssistantContext,
    InSyncMemo,
    assistant_context,
    plan_org,
    plan_tools,
)
from controller.reconcile.apply import Applier
from controller.reconcile.lease import Lease
from controller.reconcile.observe import ObservedCache
from controller.reconcile.prune import PruneLimit
from controller.reconcile.quiet import PlanInputs, QuietMemo, SharedContext, shared_part
from controller.reconcile.rollout import RolloutGuard
from controller.reconcile.runtime import Runtime
from controller.reconcile.status import Recorded, record_outcomes, record_writes
from controller.secret import redact
from controller.vapi.errors import VapiError, WriteAbandonedError
from desired_state import records
from desired_state.direct import DATABASE_ERRORS, direct
from desired_state.load import numbers_named
from desired_state.records import Fence, WriteRecord
from desired_state.shape import engine_shape

KEEP_WRITES_SECONDS = 5.0
"""How long a visit that ends in an outage may spend recording the writes it made."""
OUTAGES = (*DATABASE_ERRORS, OSError, VapiError)
"""Failures of Postgres or Vapi as a whole: not one organization's, so they pass the edge."""


class Recorder(Protocol):
    async def record(self, recorded: Recorded) -> bool:
        """Write an organization's outcome; False when it no longer may (lease lost)."""
        ...


@dataclass(frozen=True)
class DirectRecorder:
    """Records at once, in a transaction of its own (the one-shot commands)."""

    runtime: Runtime

    async def record(self, recorded: Recorded) -> bool:
        engine = self.runtime.engine
        shape = await engine_shape(engine)
        async with direct(engine).connection() as conn, conn.transaction():
            await record_writes(conn, [recorded])
            await record_outcomes(conn, [recorded], shape=shape, one_shot=True)
        return True


@dataclass
class WriteTally:
    """Organizations a reconcile brought to ``synced`` by writing, counted for one INFO line
    per interval (``flush``, the daemon's ``summary`` job): a rollout or a cold start of
    10,000 organizations logs a line every few seconds instead of 10,000 (each organization's
    own line is at DEBUG). Failures and every other state are still logged one by one."""

    orgs: int = 0
    writes: int = 0

    def add(self, outcome: OrgOutcome) -> None:
        self.orgs += 1
        self.writes += outcome.writes

    def flush(self) -> None:
        if self.orgs:
            logger.info(
                "reconciled: {orgs} organizations synced with {writes} writes",
                orgs=self.orgs,
                writes=self.writes,
            )
            self.orgs = self.writes = 0


@dataclass
class Chain:
    runtime: Runtime
    cache: ObservedCache
    _rollout_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _rollout_admitted: dict[str, int] = field(default_factory=dict, init=False)
    """Render digest -> configuration-caused updates this process admitted (mass-update
    guard)."""
    _context: tuple[tuple[object, ...], AssistantContext, SharedContext] | None = field(
        default=None, init=False
    )
    """The last ``assistant_context``, what it was derived from and its shared part (see
    ``_context_for``)."""
    written: WriteTally = field(default_factory=WriteTally, init=False)
    """Organizations synced by writing since the last summary line (``WriteTally``)."""
    _in_sync: InSyncMemo = field(default_factory=dict, init=False)
    """Agents last found in sync, and from what (``controller.core.plan.InSync``): a resync
    of an unchanged organization skips rendering and comparing."""
    quiet: QuietMemo = field(default_factory=QuietMemo, init=False)
    """Organizations whose last visit needed nothing, and what it was planned from
    (``controller.reconcile.quiet``): the daemon answers a resync of those from it."""

    # -- organizations -------------------------------------------------------------------
    async def reconcile_org(
        self,
        org_id: UUID,
        desired: DesiredState,
        *,
        reconcile_id: str,
        limit: PruneLimit,
        recorder: Recorder,
        lease: Lease,
        fence: Fence | None,
    ) -> OrgOutcome:
        """Every step for one organization (the daemon's unit of work, under its claim)."""
        self.quiet.forget(org_id)
        plan, inputs = await self._prepare(org_id, desired)
        outcome = await self.finish_org(
            plan,
            desired,
            reconcile_id=reconcile_id,
            limit=limit,
            recorder=recorder,
            lease=lease,
            fence=fence,
        )
        if inputs is not None:
            self.quiet.remember(inputs, plan, outcome, self._in_sync.get(org_id))
        return outcome

    def unchanged(self, org_id: UUID, desired: DesiredState) -> Recorded | None:
        """The record of a visit to an organization whose last visit needed nothing, if
        nothing its plan is made from has changed since (``controller.reconcile.quiet``);
        None: it must be visited through every step."""
        quiet = self.quiet.recall(org_id, desired)
        if quiet is None:
            return None
        # the rows were found equal: the memo's, so they are not compared again
        inputs, _ = self._inputs(org_id, quiet.inputs.org, desired, rows=quiet.inputs.rows)
        if inputs != quiet.inputs:
            self.quiet.forget(org_id)
            return None
        links = links_to_record(quiet.outcome, desired, desired.tool_ids, quiet.inputs.org)
        return Recorded(quiet.outcome, links)

    async def prepare_org(self, org_id: UUID, desired: DesiredState) -> OrgPlan:
        """confirm -> plan. Writes nothing anywhere (``plan`` stops here)."""
        return (await self._prepare(org_id, desired))[0]

    async def _prepare(
        self, org_id: UUID, desired: DesiredState
    ) -> tuple[OrgPlan, PlanInputs | None]:
        """The plan and what it was made from (None: planning failed)."""
        try:
            org = desired.orgs.get(org_id)
            releasable = await self._confirm(org_id, org, desired, began=time.monotonic())
            rows = desired.rows_of(org_id)
            inputs, context = self._inputs(org_id, org, desired, rows=rows)
            plan = self._plan(org_id, inputs, context, releasable)
            if plan.replaces and await self.cache.confirm_exists("assistant", plan.kept):
                inputs, context = self._inputs(org_id, org, desired, rows=rows)  # kept is gone
                plan = self._plan(org_id, inputs, context, releasable)
            return plan, inputs
        except OUTAGES:
            raise
        except Exception as exc:
            return OrgPlan(org_id, error=_internal_error(org_id, exc).message), None

    async def finish_org(
        self,
        plan: OrgPlan,
        desired: DesiredState,
        *,
        reconcile_id: str,
        limit: PruneLimit,
        recorder: Recorder,
        lease: Lease | None = None,
        fence: Fence | None = None,
    ) -> OrgOutcome:
        """guard -> apply -> judge -> record. ``lease``/``fence``: the daemon's claim."""
        org_id = plan.org_id
        applier = self._applier(reconcile_id, lease=lease, fence=fence, deferred=[])
        try:
            plan, prune_blocked = await self._guard(plan, limit)
            results = await self._apply(plan, applier)
            if any(r.reason == "vapi_object_gone" for r in results):  # deleted in Vapi: once more
                plan, prune_blocked = await self._guard(
                    await self.prepare_org(org_id, desired), limit
                )
                results = [r for r in results if r.ok] + await self._apply(plan, applier)
            outcome = self._judge(plan, results, desired, prune_blocked)
        except WriteAbandonedError:
            outcome = OrgOutcome.abandoned(org_id, writes=0)
            logger.bind(org_id=str(org_id), reconcile_id=reconcile_id).warning(
                "lease may have expired: the rest of the plan is abandoned, not sent"
            )
        except (*OUTAGES, asyncio.CancelledError):
            await self._keep_writes(applier.deferred, fence)
            raise
        except Exception as exc:
            outcome = _internal_error(org_id, exc)
        links = links_to_record(outcome, desired, desired.tool_ids)
        writes = tuple(applier.deferred or ())
        if not await recorder.record(Recorded(outcome, links, writes, fence)):
            return outcome
        _log_outcome(outcome, reconcile_id, self.written)
        return outcome

    async def _keep_writes(self, writes: list[WriteRecord] | None, fence: Fence | None) -> None:
        """An outage (Vapi's, or one statement's) or a cancellation ends the visit before its
        outcome is recorded: the records of the writes that reached Vapi are written now, on
        their own, under the claim's fence. When Postgres itself is what failed they are lost
        with it, and the creates' intents stand in for them (the next visit adopts)."""
        if not writes:
            return
        with contextlib.suppress(*DATABASE_ERRORS, OSError, TimeoutError):
            async with asyncio.timeout(KEEP_WRITES_SECONDS):
                async with direct(self.runtime.engine).connection() as conn:
                    await records.record_writes(conn, [(write, fence) for write in writes])

    async def _confirm(
        self, org_id: UUID, org: DesiredOrg | None, desired: DesiredState, began: float
    ) -> frozenset[str]:
        """Before planning a create: assistants whose creation is in doubt (an intent with no
        known outcome) are looked for by listing; those Postgres names, by id; so are the
        phone numbers its inbound agents name. Returns the numbers routing to its assistants
        that no desired inbound agent names (the only ones a prune may release)."""
        agents = org.agents if org else ()
        doubts = [desired.intents[a.agent_id] for a in agents if a.agent_id in desired.intents]
        if doubts:
            await self.cache.confirm_since(min(doubts), doubted_before=began)
        await self.cache.confirm_known("assistant", (a.vapi_assistant_id for a in agents))
        state = self.cache.state
        mine = state.for_org(org_id, (a.vapi_assistant_id for a in agents))
        linked = {tid for a in mine for tid in a.tool_ids}
        await self.cache.confirm_known("tool", linked)  # unknown ids: dangling, or just made
        if not self.cache.phones:
            return frozenset()
        named = {a.vapi_phone_number_id for a in agents if a.vapi_phone_number_id}
        await self.cache.confirm_known("phone-number", named)
        candidates = {n.id for n in state.numbers_routing_to(a.id for a in mine)} - named
        if not candidates:
            return frozenset()
        async with self.runtime.engine.connect() as conn:
            return frozenset(candidates - await numbers_named(conn, candidates))

    def _inputs(
        self, org_id: UUID, org: DesiredOrg | None, desired: DesiredState, *, rows: object
    ) -> tuple[PlanInputs, AssistantContext]:
        """What the organization's plan is made from, as the cache and settings hold it now,
        and the batch's context it is planned with. ``rows``: what ``org`` was read from
        (``DesiredState.rows_of``)."""
        observed = self.cache.state
        named = [a.vapi_assistant_id for a in org.agents] if org else []
        mine = tuple(observed.for_org(org_id, named))
        context, shared = self._context_for(desired, observed)
        inputs = PlanInputs(
            rows=rows,
            org=org,
            observed=mine,
            unusable=tuple(observed.unusable_for_org(org_id, named)),
            numbers=tuple(self._numbers(org, mine).values()) if self.cache.phones else None,
            baselines=tuple(context.baselines.get(a.id) for a in mine),
            shared=shared,
            settings=self.runtime.settings,
        )
        return inputs, context

    def _plan(
        self,
        org_id: UUID,
        inputs: PlanInputs,
        context: AssistantContext,
        releasable: frozenset[str],
    ) -> OrgPlan:
        return plan_org(
            org_id=org_id,
            desired=inputs.org,
            observed=inputs.observed,
            unusable=inputs.unusable,
            context=context,
            prune=inputs.settings.controller.prune,
            numbers=inputs.numbers_by_id,
            releasable=releasable,
            memo=self._in_sync,
        )

    def _context_for(
        self, desired: DesiredState, observed: ObservedState
    ) -> tuple[AssistantContext, SharedContext]:
        """``assistant_context`` of the snapshot, derived once while neither the snapshot,
        the observed state (its ``version``) nor the settings changed: every organization
        of a claim batch shares it. Its shared part stays the same object from one snapshot
        to the next while it is equal (compared once per snapshot, not per organization)."""
        settings = self.runtime.settings
        inputs = (desired, observed, observed.version, observed.listed, settings)
        last = self._context
        if last is not None and all(a is b for a, b in zip(last[0], inputs, strict=True)):
            return last[1], last[2]
        context = assistant_context(
            desired,
            observed,
            defaults=settings.rendering,
            backend_url=settings.backend_url,
            settings_hash=settings.render_digest,
        )
        shared = shared_part(context)
        if last is not None and last[2] == shared:
            shared = last[2]
        self._context = inputs, context, shared
        return context, shared

    def _numbers(
        self, org: DesiredOrg | None, mine: Sequence[ObservedAssistant]
    ) -> dict[str, ObservedPhoneNumber]:
        """The numbers the organization's inbound agents name, and those routing to its
        assistants."""
        state = self.cache.state
        found = {n.id: n for n in state.numbers_routing_to(a.id for a in mine)}
        for agent in org.agents if org else ():
            number = state.phone_number(agent.vapi_phone_number_id or "")
            if number is not None:
                found[number.id] = number
        return found

    async def _guard(self, plan: OrgPlan, limit: PruneLimit) -> tuple[OrgPlan, str]:
        """Deletions only within the prune limit; over it, none (and the reason).
        Configuration-caused updates only within the mass-update guard; the rest held."""
        plan = await self.hold_rollout(plan)
        if not plan.deletes:
            return plan, ""
        decision = await limit.decide(len(plan.deletes))
        if decision.allowed:
            return plan, ""
        return plan.without_deletes(), decision.reason

    async def hold_rollout(self, plan: OrgPlan) -> OrgPlan:
        """The plan less the configuration-caused updates the mass-update guard holds.
        Admissions are serialised in the process, so concurrent reconciles share a canary."""
        updates = plan.config_updates
        if not updates:
            return plan
        settings = self.runtime.settings
        guard = RolloutGuard(self.runtime.engine, self.cache.state, settings)
        async with self._rollout_lock:
            here = self._rollout_admitted.get(settings.render_digest, 0)
            admission = await guard.admit(len(updates), admitted_here=here)
            self._rollout_admitted[settings.render_digest] = here + admission.admitted
        if admission.admitted == len(updates):
            return plan
        return plan.holding(updates[admission.admitted :], admission.reason)

    async def _apply(self, plan: OrgPlan, applier: Applier) -> list[ActionResult]:
        """One action at a time, each only while the settings in force allow writes (and,
        inside the applier, only while the claim's lease holds); the intents of the plan's
        creates are recorded first, in one statement."""
        if plan.blocked or plan.error:
            return []
        results: list[ActionResult] = []
        if self.runtime.writes_allowed(plan.org_id):
            await applier.declare(plan.actions)
        try:
            for action in plan.actions:
                if not self.runtime.writes_allowed(plan.org_id):
                    break
                results.append(await applier.apply(action))
        except WriteAbandonedError:
            await applier.withdraw()
            raise
        await applier.withdraw()  # paused mid-plan: the creates it did not get to
        return results

    def _judge(
        self,
        plan: OrgPlan,
        results: list[ActionResult],
        desired: DesiredState,
        prune_blocked: str,
    ) -> OrgOutcome:
        settings = self.runtime.settings
        return org_outcome(
            plan,
            results,
            desired=plan.org_id in desired.orgs,
            paused=settings.is_paused(plan.org_id),
            observe_only=settings.controller.mode == "observe",
            prune_blocked=prune_blocked,
        )

    # -- the account's tools -------------------------------------------------------------
    async def reconcile_tools(
        self,
        desired: DesiredState,
        *,
        reconcile_id: str,
        limit: PruneLimit,
        apply: bool = True,
        deletes_only: bool = False,
        lease: Lease | None = None,
    ) -> ToolsOutcome:
        """confirm -> plan -> (guard -> apply -> judge) for the tools every organization
        shares. Their record is the registry, written by each action as it lands.
        ``deletes_only``: a second visit in one pass, for deletions that waited on unlinks
        (a create whose outcome was unknown must be observed again before it is repeated)."""
        await self.cache.confirm_known("tool", desired.tool_ids.values())
        settings = self.runtime.settings
        plan = plan_tools(
            tools=desired.tools,
            observed=self.cache.state.tools,
            registry=desired.tool_ids,
            baselines=desired.baselines,
            backend_url=settings.backend_url,
            prune=settings.controller.prune,
        )
        if not apply:
            return ToolsOutcome(plan)
        actions = plan.actions
        if deletes_only:
            actions = tuple(a for a in actions if isinstance(a, DeleteTool))
        try:
            results = await self._apply_tools(
                actions, self._applier(reconcile_id, lease=lease), limit
            )
        except WriteAbandonedError:
            return ToolsOutcome(plan, ("abandoned: the claim's lease may have expired",))
        errors = [f"tool {name}: {why}" for name, why in plan.invalid.items()]
        errors += [f"{r.description}: {r.error}" for r in results if not r.ok]
        relink = any(r.ok and r.action in ("CreateTool", "AdoptTool") for r in results)
        return ToolsOutcome(plan, tuple(errors), relink)

    async def _apply_tools(
        self, actions: tuple[ToolAction, ...], applier: Applier, limit: PruneLimit
    ) -> list[ActionResult]:
        """Creates at once (independent of each other), then the rest one by one; a tool is
        deleted only once no assistant links it, and within the prune limit."""
        creates = [a for a in actions if isinstance(a, CreateTool)]
        results: list[ActionResult] = []
        if creates and self.runtime.writes_allowed(TOOLS):
            await applier.declare(creates)
            results += await asyncio.gather(*(applier.apply(a) for a in creates))
        for action in actions:
            if isinstance(action, CreateTool):
                continue
            if not self.runtime.writes_allowed(TOOLS):
                break
            if isinstance(action, DeleteTool) and not await self._may_delete_tool(action, limit):
                continue
            results.append(await applier.apply(action))
        return results

    async def _may_delete_tool(self, action: DeleteTool, limit: PruneLimit) -> bool:
        linked = self.cache.state.linked_tool_ids()
        return action.vapi_id not in linked and (await limit.decide(1)).allowed

    def _applier(
        self,
        reconcile_id: str,
        *,
        lease: Lease | None = None,
        fence: Fence | None = None,
        deferred: list[WriteRecord] | None = None,
    ) -> Applier:
        return Applier(
            self.runtime.client,
            self.runtime.engine,
            reconcile_id,
            self.cache.state,
            lease or Lease(),
            fence,
            deferred,
        )


def _internal_error(org_id: UUID, exc: Exception) -> OrgOutcome:
    """The chain's edge: a bug in one organization's reconcile, logged with its traceback."""
    what = redact(f"{type(exc).__name__}: {exc}")
    logger.opt(exception=exc).bind(org_id=str(org_id)).error(
        "internal error reconciling the organization: {}", what
    )
    return OrgOutcome.internal_error(org_id, what)


def _log_outcome(outcome: OrgOutcome, reconcile_id: str, tally: WriteTally) -> None:
    """One line per reconcile: at DEBUG when synced (a resync that found nothing to do, or
    writes that ``tally`` sums up), WARNING when failed, INFO otherwise."""
    synced = outcome.state == "synced"
    if synced and outcome.writes:
        tally.add(outcome)
    level = "DEBUG" if synced else "WARNING" if outcome.state == "failed" else "INFO"
    logger.bind(org_id=str(outcome.org_id), reconcile_id=reconcile_id).log(
        level,
        "reconciled: {state}, {writes} writes{message}",
        state=outcome.state,
        writes=outcome.writes,
        message=f": {outcome.message}" if outcome.message else "",
    )
