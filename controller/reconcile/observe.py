"""Observe Vapi. Observing never writes.

``ObservedCache`` keeps an ``ObservedState`` (the indexed view a plan reads) up to date
cheaply, as an informer does: a complete listing at start and now and then (deletions are
invisible otherwise), ``updatedAtGe`` polls in between, and the controller's own writes
applied as they happen, so they never look like drift. Objects Vapi returns in a shape the
controller cannot read are reported once (id and what is wrong) and kept apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from loguru import logger

from controller.core.keys import TOOLS, WorkKey
from controller.core.observed import ObservedState, Resource
from controller.vapi.client import VapiClient
from controller.vapi.errors import NotFoundError
from controller.vapi.listing import Page, parse_instant

WATERMARK_SKEW = timedelta(minutes=5)


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

    def __init__(self, client: VapiClient, *, phones: bool = False) -> None:
        """``phones``: also watch phone numbers (the platform has
        ``agents.vapi_phone_number_id``; without it there is no phone work at all)."""
        self.client = client
        self.phones = False
        self.resources: tuple[Resource, ...] = ("assistant", "tool")
        self.watch_phones(phones)
        self.state = ObservedState()
        self._watermark: dict[Resource, str] = {}
        self.listed = False
        self.relist_calls = 0
        """Requests the last complete listing cost (what the next one will cost, about)."""
        self._confirming: _Confirmation | None = None
        self._reported: set[tuple[str, str]] = set()

    def watch_phones(self, enabled: bool) -> None:
        self.phones = enabled
        self.resources = ("assistant", "tool", "phone-number") if enabled else ("assistant", "tool")

    async def relist(self) -> set[WorkKey]:
        """A complete listing, applied to the cache page by page (memory stays at the cache
        plus one page); then what the listing proved gone is removed. Returns the
        organizations whose observed state changed (all of them on the first listing)."""
        seen: dict[Resource, set[str]] = {resource: set() for resource in self.resources}
        began: dict[Resource, datetime] = {}
        touched: set[WorkKey] = set()

        pages = 0

        def absorb(resource: Resource) -> Callable[[Page], None]:
            def page(items: Page) -> None:
                nonlocal pages
                pages += 1
                if items and resource not in began:  # newest first: Vapi's clock at the start
                    began[resource] = max(parse_instant(str(i["createdAt"])) for i in items)
                seen[resource].update(str(i["id"]) for i in items)
                touched.update(self._absorb(resource, items))

            return page

        await asyncio.gather(*(self.client.list_all(r, on_page=absorb(r)) for r in self.resources))
        for resource, ids in seen.items():
            touched |= self._forget_unseen(resource, ids, began.get(resource))
            self._advance(resource, [])  # an empty account still starts its watermark
        first = not self.listed
        self.listed = True
        self.state.listed = True
        self.relist_calls = pages + len(self.resources)  # each ends on a page adding nothing
        return {TOOLS, *self.state.tagged_org_ids()} if first else touched

    def _forget_unseen(
        self, resource: Resource, seen: set[str], began: datetime | None
    ) -> set[WorkKey]:
        """Deleted in Vapi: cached, not listed, and created before the listing began (an
        object created since, by a write of ours, may have been missed by the walk)."""
        cached = self.state.all(resource)
        touched: set[WorkKey] = set()
        for found in cached:
            if found.id in seen:
                continue
            if began is None or not found.created_at or parse_instant(found.created_at) <= began:
                touched |= self.state.remove(resource, found.id)
        for unusable in list(self.state.unusable.values()):
            if unusable.resource == resource and unusable.vapi_id not in seen:
                touched |= self.state.remove(resource, unusable.vapi_id)
        return touched

    async def poll(self) -> set[WorkKey]:
        """What changed since the last look (``updatedAtGe`` the newest ``updatedAt`` seen)."""
        touched: set[WorkKey] = set()
        for resource in self.resources:
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

    async def confirm_known(self, resource: Resource, vapi_ids: Iterable[str | None]) -> None:
        """Confirm before creating: an object Postgres names but the cache lacks (another
        replica made it since the last poll, or it was deleted) is looked up by id."""
        for vid in vapi_ids:
            if vid and not self.state.holds(resource, vid):
                try:
                    self.record_write(resource, await self.client.get(resource, vid))
                except NotFoundError:
                    continue

    async def confirm_exists(self, resource: Resource, vapi_ids: Iterable[str]) -> set[str]:
        """Each id looked up in Vapi: the answer refreshes the cache, a 404 removes the
        object from it. Returns the ids found gone."""
        gone: set[str] = set()
        for vid in vapi_ids:
            try:
                self.record_write(resource, await self.client.get(resource, vid))
            except NotFoundError:
                self.state.remove(resource, vid)
                gone.add(vid)
        return gone

    def forget(self, resource: Resource, vapi_id: str) -> set[WorkKey]:
        """Another replica deleted the object (its NOTIFY): the work keys it touched."""
        return self.state.remove(resource, vapi_id)

    def record_write(self, resource: Resource, body: Mapping[str, Any]) -> None:
        self.state.upsert(resource, body)
        self._report_unusable()

    def _absorb(self, resource: Resource, items: Sequence[Mapping[str, Any]]) -> set[WorkKey]:
        touched: set[WorkKey] = set()
        for body in items:
            known = self.state.get(resource, str(body["id"]))
            if known is not None and not _changed(body, known.body):
                continue  # the cache already holds this version or a later write of ours
            touched |= self.state.upsert(resource, body)
        self._advance(resource, items)
        self._report_unusable()
        return touched

    def _report_unusable(self) -> None:
        """Each unusable object once per problem, at WARNING, by id (never its content)."""
        for found in self.state.unusable.values():
            if (found.vapi_id, found.problem) not in self._reported:
                self._reported.add((found.vapi_id, found.problem))
                logger.warning(
                    "Vapi returned {} {} in a shape the controller cannot use ({}): it is left "
                    "alone and never replaced",
                    found.resource,
                    found.vapi_id,
                    found.problem,
                )

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


def _changed(body: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    """Whether a listed ``body`` is a version the cache does not hold. ``updatedAt`` has
    millisecond resolution: an edit in the same millisecond as the cached version is told
    apart by its content (a listing leaves out the fields a single GET spells as null)."""
    new, old = body.get("updatedAt"), than.get("updatedAt")
    if not (new and old):
        return True
    listed, cached = parse_instant(str(new)), parse_instant(str(old))
    if listed != cached:
        return listed > cached
    return body != than and _present(body) != _present(than)


def _present(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}
