"""A one-shot pass reads Vapi and Postgres beside its set-up check (start-up's critical path,
issue 17): what a wrong set-up leaves a user to read is the check's error, never the error of
a read that tripped over the same problem, and no read outlives the failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.reconcile.full_pass import _read_beside


class WrongSetupError(Exception):
    pass


async def fails_after(seconds: float, error: Exception) -> Any:
    await asyncio.sleep(seconds)
    raise error


async def test_the_set_up_error_wins_over_a_read_that_failed_first() -> None:
    with pytest.raises(WrongSetupError):
        await _read_beside(
            fails_after(0.05, WrongSetupError("run migrate")),
            fails_after(0.0, RuntimeError("relation does not exist")),
            asyncio.sleep(0, result="desired"),
        )


async def test_a_failed_set_up_cancels_the_reads() -> None:
    listing = asyncio.Event()

    async def endless_listing() -> Any:
        try:
            await asyncio.sleep(60)
        finally:
            listing.set()

    with pytest.raises(WrongSetupError):
        await asyncio.wait_for(
            _read_beside(
                fails_after(0.0, WrongSetupError("run migrate")),
                endless_listing(),
                asyncio.sleep(0, result="desired"),
            ),
            timeout=5,
        )
    assert listing.is_set()


async def test_a_read_error_is_raised_when_the_set_up_passes() -> None:
    with pytest.raises(RuntimeError, match="Vapi down"):
        await _read_beside(
            asyncio.sleep(0.02),
            fails_after(0.0, RuntimeError("Vapi down")),
            asyncio.sleep(0, result="desired"),
        )


async def test_both_reads_are_returned_once_the_set_up_passed() -> None:
    assert await _read_beside(
        asyncio.sleep(0.01), asyncio.sleep(0, result="chain"), asyncio.sleep(0, result="desired")
    ) == ("chain", "desired")
