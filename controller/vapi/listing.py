"""A listing that is provably complete, on an API with no cursor (see VAPI.md).

Walk backwards with an inclusive ``createdAtLe`` (bulk-created items share timestamps, so
``createdAtLt`` would skip some), de-duplicate by id, stop only on a page that adds no new id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from controller.vapi.errors import IncompleteListingError, MalformedResponseError

Page = list[dict[str, Any]]
FetchPage = Callable[[Mapping[str, str | int]], Awaitable[Page]]

DOCUMENTED_PAGE_CAP = 100
"""Vapi's GitOps notes: responses are capped at 100 items whatever ``limit`` says."""
MAX_LISTED = 1_000_000
"""A listing that keeps finding new ids past this is refused: a server inventing items
forever must not hold the controller (or its memory) hostage."""


async def complete_listing(
    fetch_page: FetchPage,
    *,
    limit: int,
    filters: Mapping[str, str] | None = None,
    short_page_ends: bool = False,
    on_page: Callable[[Page], None] | None = None,
) -> Page:
    """Every item matching ``filters``, newest first, each once.

    ``short_page_ends``: stop at a page holding fewer items than Vapi's documented cap. Not a
    proof (the cap is not guaranteed), so only for looks whose gaps a later complete listing
    fills, such as change polls; never to conclude that something does not exist.

    ``on_page``: each page's new items are handed over as they arrive and not kept (only
    their ids are, to de-duplicate); the listing then returns nothing. Memory stays at one
    page whatever the size of the account."""
    seen: dict[str, dict[str, Any]] = {}
    params: dict[str, str | int] = {**(filters or {}), "limit": limit}
    ambiguous_at = min(limit, DOCUMENTED_PAGE_CAP)
    while True:
        page = await fetch_page(params)
        fresh = [item for item in page if str(item["id"]) not in seen]
        if not fresh:
            if len(page) >= max(ambiguous_at, 2) and len({_created(i) for i in page}) == 1:
                raise IncompleteListingError(
                    f"more than {len(page)} items share createdAt {page[0].get('createdAt')}: "
                    "the listing cannot be proven complete",
                    method="GET",
                    path="(listing)",
                )
            return [] if on_page else sorted(seen.values(), key=_created, reverse=True)
        if len(seen) + len(fresh) > MAX_LISTED:
            raise IncompleteListingError(
                f"the listing passed {MAX_LISTED} items without ending: refused",
                method="GET",
                path="(listing)",
            )
        for item in fresh:
            seen[str(item["id"])] = {} if on_page else item
        if on_page:
            on_page(fresh)
        if short_page_ends and len(page) < ambiguous_at:
            return [] if on_page else sorted(seen.values(), key=_created, reverse=True)
        oldest = min(page, key=_created)
        params = {**(filters or {}), "limit": limit, "createdAtLe": str(oldest["createdAt"])}


def parse_instant(stamp: Any) -> datetime:
    """A Vapi timestamp as an aware time (a naive one is taken as UTC)."""
    try:
        parsed = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        raise MalformedResponseError(
            f"{str(stamp)[:40]!r} is not an ISO 8601 time", method="GET", path="(listing)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _created(item: Mapping[str, Any]) -> datetime:
    return parse_instant(item["createdAt"])
