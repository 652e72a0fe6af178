"""One unit of the daemon's work: reconcile a claimed organization (or the account's tools)
against the observed-state cache. Returns the outcome; the caller records it, fenced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text

from controller.core.actions import CreateTool, DeleteTool
from controller.core.desired import DesiredState
from controller.core.outcome import OrgOutcome
from controller.core.plan import PruneDecision, guard_prune, plan_org
from controller.reconcile.apply import Applier
from controller.reconcile.converge import Runtime, assistant_context, converge_org
from controller.reconcile.full_pass import plan_tools_for
from controller.reconcile.observe import ObservedCache
from controller.vapi.client import Resource
from controller.vapi.errors import NotFoundError
from desired_state.load import load_desired
from desired_state.queue import TOOLS_KEY


@dataclass
class Worker:
    runtime: Runtime
    cache: ObservedCache

    async def reconcile_org(
        self, org_id: UUID, desired: DesiredState, reconcile_id: str
    ) -> OrgOutcome:
        visit_began = time.monotonic()
        settings = self.runtime.settings
        org = desired.orgs.get(org_id)
        doubts = [
            desired.intents[a.agent_id]
            for a in (org.agents if org else ())
            if a.agent_id in desired.intents
        ]
        if doubts:
            await self.cache.confirm_since(min(doubts), doubted_before=visit_began)
        await self._confirm_known(
            "assistant", (a.vapi_assistant_id for a in (org.agents if org else ()))
        )
        observed = self.cache.state
        plan = plan_org(
            org_id=org_id,
            desired=org,
            observed=observed.for_org(org_id, org),
            context=assistant_context(settings, desired, observed, desired.tool_ids),
            prune=settings.controller.prune,
        )
        prune_blocked = ""
        if plan.deletes:
            decision = await self.prune_decision(len(plan.deletes))
            if not decision.allowed:
                plan, prune_blocked = plan.without_deletes(), decision.reason
        applier = Applier(self.runtime.client, self.runtime.engine, reconcile_id, observed)
        return await converge_org(
            self.runtime, applier, plan, desired=org is not None, prune_blocked=prune_blocked
        )

    async def _confirm_known(self, resource: Resource, vapi_ids: Iterable[str | None]) -> None:
        """Confirm before creating: an object Postgres names but the cache lacks (another
        replica made it since the last poll, or it was deleted) is looked up by id."""
        for vid in vapi_ids:
            if vid and self.cache.state.get(resource, vid) is None:
                try:
                    self.cache.record_write(resource, await self.runtime.client.get(resource, vid))
                except NotFoundError:
                    continue

    async def reconcile_tools(self, reconcile_id: str) -> tuple[OrgOutcome, bool]:
        """Tools for the whole account; True when tool ids changed (every org must relink)."""
        async with self.runtime.engine.connect() as conn:
            desired = await load_desired(conn, org_ids=())
        await self._confirm_known("tool", desired.tool_ids.values())
        plan = plan_tools_for(self.runtime.settings, desired, self.cache.state)
        applier = Applier(self.runtime.client, self.runtime.engine, reconcile_id, self.cache.state)
        linked = {
            tid
            for a in self.cache.state.assistants
            for tid in (a.body.get("model") or {}).get("toolIds") or ()
        }
        errors = [f"tool {name}: {why}" for name, why in plan.invalid.items()]
        creates = [a for a in plan.actions if isinstance(a, CreateTool)]
        results = []
        if creates and self.runtime.writes_allowed(TOOLS_KEY):  # independent: all at once
            results += await asyncio.gather(*(applier.apply(a) for a in creates))
        for action in plan.actions:  # the rest one by one: deletes count against a bound
            if isinstance(action, CreateTool):
                continue
            if not self.runtime.writes_allowed(TOOLS_KEY):
                break
            if isinstance(action, DeleteTool) and not await self._may_delete_tool(action, linked):
                continue
            results.append(await applier.apply(action))
        errors += [f"{r.description}: {r.error}" for r in results if not r.ok]
        relink = any(r.ok and r.action in ("CreateTool", "AdoptTool") for r in results)
        if errors:
            return OrgOutcome(TOOLS_KEY, "failed", "; ".join(errors), retry="backoff"), relink
        return OrgOutcome(TOOLS_KEY, "synced", ""), relink

    async def _may_delete_tool(self, action: DeleteTool, linked: set[str]) -> bool:
        """A tool goes only once no assistant links it, and within the prune bound."""
        return action.vapi_id not in linked and (await self.prune_decision(1)).allowed

    async def prune_decision(self, planned: int) -> PruneDecision:
        """The pass-wide bound, for a daemon with no passes: deletions within the last resync
        interval count against it, across every replica (the audit log is shared)."""
        settings = self.runtime.settings.controller
        async with self.runtime.engine.connect() as conn:
            recent = await conn.execute(
                text(
                    "select count(*) from reconciler.audit_log where outcome = 'ok' "
                    "and action in ('DeleteAssistant', 'DeleteTool') "
                    "and at > now() - make_interval(secs => :window)"
                ),
                {"window": settings.resync_interval_seconds},
            )
            done = int(recent.scalar_one())
        return guard_prune(
            planned_deletes=planned + done,
            managed_total=self.cache.state.managed_count() + done,
            max_count=settings.max_prune_per_pass,
            max_fraction=settings.max_prune_fraction,
        )
