"""Observe Vapi. Observing never writes.

``ObservedState`` is the indexed view a plan reads. ``ObservedCache`` keeps one up to date
cheaply (an informer): a complete listing at start and now and then (deletions are invisible
otherwise), ``updatedAtGe`` polls in between, and the controller's own writes applied as they
happen, so they never look like drift.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from controller.core.desired import DesiredOrg
from controller.core.observed import ObservedAssistant, ObservedTool
from controller.vapi.client import Resource, VapiClient
from controller.vapi.listing import Page, parse_instant
from desired_state.queue import TOOLS_KEY

WATERMARK_SKEW = timedelta(minutes=5)


class ObservedState:
    def __init__(
        self,
        assistants: Iterable[Mapping[str, Any]] = (),
        tools: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self._assistants: dict[str, ObservedAssistant] = {}
        self._tools: dict[str, ObservedTool] = {}
        self._by_org: dict[UUID, dict[str, ObservedAssistant]] = {}
        self._managed = 0
        for body in assistants:
            self.upsert("assistant", body)
        for body in tools:
            self.upsert("tool", body)

    @property
    def assistants(self) -> tuple[ObservedAssistant, ...]:
        return tuple(self._assistants.values())

    @property
    def tools(self) -> tuple[ObservedTool, ...]:
        return tuple(self._tools.values())

    def assistant(self, vapi_id: str) -> ObservedAssistant | None:
        return self._assistants.get(vapi_id)

    def get(self, resource: Resource, vapi_id: str) -> ObservedAssistant | ObservedTool | None:
        return (self._assistants if resource == "assistant" else self._tools).get(vapi_id)

    def upsert(self, resource: Resource, body: Mapping[str, Any]) -> set[UUID]:
        """Store ``body``; returns the organizations whose observed state it touched."""
        if resource == "tool":
            self._tools[str(body["id"])] = ObservedTool(body)
            return {TOOLS_KEY}
        touched = self.remove("assistant", str(body["id"]))
        new = ObservedAssistant(body)
        self._assistants[new.id] = new
        self._managed += new.is_managed
        if new.org_tag is not None:
            self._by_org.setdefault(new.org_tag, {})[new.id] = new
            touched.add(new.org_tag)
        return touched

    def remove(self, resource: Resource, vapi_id: str) -> set[UUID]:
        if resource == "tool":
            return {TOOLS_KEY} if self._tools.pop(vapi_id, None) else set()
        old = self._assistants.pop(vapi_id, None)
        if old is None:
            return set()
        self._managed -= old.is_managed
        if old.org_tag is not None:
            self._by_org.get(old.org_tag, {}).pop(vapi_id, None)
            return {old.org_tag}
        return set()

    def tagged_org_ids(self) -> set[UUID]:
        return {
            org for org, found in self._by_org.items() if any(a.is_managed for a in found.values())
        }

    def managed_count(self) -> int:
        return self._managed

    def for_org(self, org_id: UUID, desired: DesiredOrg | None) -> Sequence[ObservedAssistant]:
        """Assistants tagged for the organization, plus those its agents name by id."""
        found = dict(self._by_org.get(org_id, {}))
        for agent in desired.agents if desired else ():
            named = self._assistants.get(agent.vapi_assistant_id or "")
            if named is not None:
                found.setdefault(named.id, named)
        return list(found.values())


async def observe(client: VapiClient) -> ObservedState:
    assistants, tools = await asyncio.gather(client.list_all("assistant"), client.list_all("tool"))
    return ObservedState(assistants, tools)


def org_ids_to_visit(
    desired: Iterable[UUID], observed: ObservedState, known: Iterable[UUID]
) -> list[UUID]:
    """Desired organizations, plus any with assistants or status rows left to settle."""
    return sorted(set(desired) | observed.tagged_org_ids() | set(known), key=str)


@dataclass(frozen=True)
class _Confirmation:
    started: float
    since: datetime
    listing: asyncio.Future[None]

    def serves(self, moment: datetime, doubted_before: float) -> bool:
        failed = self.listing.done() and (
            self.listing.cancelled() or self.listing.exception() is not None
        )
        return not failed and self.started >= doubted_before and self.since <= moment


class ObservedCache:
    """The daemon's observed state, kept current at the cost of a few calls per interval."""

    def __init__(self, client: VapiClient) -> None:
        self.client = client
        self.state = ObservedState()
        self._watermark: dict[Resource, str] = {}
        self.listed = False
        self._confirming: _Confirmation | None = None

    async def relist(self) -> set[UUID]:
        """A complete listing, applied to the cache page by page (memory stays at the cache
        plus one page); then what the listing proved gone is removed. Returns the
        organizations whose observed state changed (all of them on the first listing)."""
        seen: dict[Resource, set[str]] = {"assistant": set(), "tool": set()}
        began: dict[Resource, datetime] = {}
        touched: set[UUID] = set()

        def absorb(resource: Resource) -> Callable[[Page], None]:
            def page(items: Page) -> None:
                if items and resource not in began:  # newest first: Vapi's clock at the start
                    began[resource] = max(parse_instant(str(i["createdAt"])) for i in items)
                seen[resource].update(str(i["id"]) for i in items)
                touched.update(self._absorb(resource, items))

            return page

        await asyncio.gather(
            self.client.list_all("assistant", on_page=absorb("assistant")),
            self.client.list_all("tool", on_page=absorb("tool")),
        )
        for resource, ids in seen.items():
            touched |= self._forget_unseen(resource, ids, began.get(resource))
            self._advance(resource, [])  # an empty account still starts its watermark
        first = not self.listed
        self.listed = True
        return self.state.tagged_org_ids() if first else touched

    def _forget_unseen(
        self, resource: Resource, seen: set[str], began: datetime | None
    ) -> set[UUID]:
        """Deleted in Vapi: cached, not listed, and created before the listing began (an
        object created since, by a write of ours, may have been missed by the walk)."""
        cached = self.state.assistants if resource == "assistant" else self.state.tools
        touched: set[UUID] = set()
        for found in cached:
            if found.id in seen:
                continue
            if began is None or not found.created_at or parse_instant(found.created_at) <= began:
                touched |= self.state.remove(resource, found.id)
        return touched

    async def poll(self) -> set[UUID]:
        """What changed since the last look (``updatedAtGe`` the newest ``updatedAt`` seen)."""
        touched: set[UUID] = set()
        resources: tuple[Resource, ...] = ("assistant", "tool")
        for resource in resources:
            since = self._watermark.get(resource)
            if since is None:
                continue
            items = await self.client.list_all(
                resource, filters={"updatedAtGe": since}, short_page_ends=True
            )
            touched |= self._absorb(resource, items)
        return touched

    async def confirm_since(self, moment: datetime, *, doubted_before: float) -> None:
        """Before creating after a doubt: every assistant created since ``moment``.

        One listing serves every organization whose doubt arose before it started
        (``doubted_before``, monotonic: when the organization's current visit began) and
        reaches back far enough: a cold start with many doubts costs one listing, not one
        per organization."""
        running = self._confirming
        if running is None or not running.serves(moment, doubted_before):
            running = _Confirmation(
                time.monotonic(), moment, asyncio.ensure_future(self._confirm(moment))
            )
            self._confirming = running
        await asyncio.shield(running.listing)

    async def _confirm(self, moment: datetime) -> None:
        since = (moment - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
        items = await self.client.list_all("assistant", filters={"createdAtGe": since})
        self._absorb("assistant", items)

    def record_write(self, resource: Resource, body: Mapping[str, Any]) -> None:
        self.state.upsert(resource, body)

    def _absorb(self, resource: Resource, items: Sequence[Mapping[str, Any]]) -> set[UUID]:
        touched: set[UUID] = set()
        for body in items:
            known = self.state.get(resource, str(body["id"]))
            if known is not None and not _newer(body, known.body):
                continue  # the cache already holds this version or a later write of ours
            touched |= self.state.upsert(resource, body)
        self._advance(resource, items)
        return touched

    def _advance(self, resource: Resource, items: Sequence[Mapping[str, Any]]) -> None:
        """The newest ``updatedAt`` a listing returned. Never moved by the controller's own
        writes: an edit older than them would be skipped. An empty account starts the
        watermark at the local time less a margin for clock skew."""
        stamps = [str(i["updatedAt"]) for i in items if i.get("updatedAt")]
        if self._watermark.get(resource):
            stamps.append(self._watermark[resource])
        if not stamps:
            start = datetime.now(UTC) - WATERMARK_SKEW
            stamps.append(start.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        self._watermark[resource] = max(stamps, key=parse_instant)


def _newer(body: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    new, old = body.get("updatedAt"), than.get("updatedAt")
    return not (new and old) or parse_instant(str(new)) > parse_instant(str(old))
