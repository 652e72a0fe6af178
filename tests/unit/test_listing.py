"""The complete listing over a cursor-less, capped API."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.vapi.errors import IncompleteListingError
from controller.vapi.listing import complete_listing


def items(count: int, *, same_stamp_every: int = 1) -> list[dict[str, Any]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "id": f"i{n}",
            "createdAt": (start + timedelta(milliseconds=n // same_stamp_every))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }
        for n in range(count)
    ]


class CappedServer:
    """Newest first, ``createdAtLe`` only, a page cap below the requested limit."""

    def __init__(self, data: list[dict[str, Any]], cap: int) -> None:
        self.data = sorted(data, key=lambda i: i["createdAt"], reverse=True)
        self.cap = cap
        self.calls = 0

    async def __call__(self, params: Mapping[str, str | int]) -> list[dict[str, Any]]:
        self.calls += 1
        found = [
            i
            for i in self.data
            if "createdAtLe" not in params or i["createdAt"] <= str(params["createdAtLe"])
        ]
        return found[: min(int(params["limit"]), self.cap)]


@pytest.mark.parametrize(
    ("count", "stamp_share"), [(0, 1), (1, 1), (99, 1), (100, 1), (1000, 1), (1000, 7), (450, 40)]
)
async def test_every_item_is_listed_once_despite_a_cap_below_the_limit(
    count: int, stamp_share: int
) -> None:
    data = items(count, same_stamp_every=stamp_share)
    server = CappedServer(data, cap=100)

    listed = await complete_listing(server, limit=1000)

    assert sorted(i["id"] for i in listed) == sorted(i["id"] for i in data)


async def test_more_items_on_one_timestamp_than_a_page_holds_is_an_error_not_a_short_list() -> None:
    server = CappedServer(items(150, same_stamp_every=150), cap=100)
    with pytest.raises(IncompleteListingError):
        await complete_listing(server, limit=1000)


async def test_a_listing_costs_about_one_call_per_page() -> None:
    server = CappedServer(items(1000), cap=100)
    await complete_listing(server, limit=1000)
    assert server.calls <= 12


async def test_a_change_poll_may_stop_at_a_short_page() -> None:
    server = CappedServer(items(30), cap=100)
    listed = await complete_listing(server, limit=1000, short_page_ends=True)
    assert len(listed) == 30
    assert server.calls == 1


async def test_pages_handed_over_as_they_arrive_hold_every_item_once_and_keep_none() -> None:
    data = items(1000, same_stamp_every=7)
    handed: list[str] = []

    listed = await complete_listing(
        CappedServer(data, cap=100),
        limit=1000,
        on_page=lambda page: handed.extend(i["id"] for i in page),
    )

    assert listed == []
    assert sorted(handed) == sorted(i["id"] for i in data)


async def test_a_server_inventing_items_forever_is_refused_at_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("controller.vapi.listing.MAX_LISTED", 500)
    invented = 0

    async def inventing(params: Mapping[str, str | int]) -> list[dict[str, Any]]:
        nonlocal invented
        invented += 100
        return [
            {"id": f"fake{invented + n}", "createdAt": "2026-01-01T00:00:00Z"} for n in range(100)
        ]

    with pytest.raises(IncompleteListingError, match="passed 500 items"):
        await complete_listing(inventing, limit=100)
    assert invented == 600
