"""While visits write, the claim loop waits for several slots to be free before it claims
(one claim and one read of the desired state then serve several organizations), but an
announced change ends that wait: an edit is never held for a bigger batch."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from controller.daemon import claims
from controller.daemon.claims import ClaimLoop
from controller.daemon.metrics import Metrics
from controller.daemon.supervisor import Daemon
from controller.reconcile.runtime import Runtime
from desired_state.queue import Claim, Lane
from tests.integration.helpers import with_controller

CONCURRENCY = 4


@contextlib.asynccontextmanager
async def busy_writing(runtime: Runtime, held: int) -> AsyncIterator[ClaimLoop]:
    """A claim loop whose visits wrote just now and which holds ``held`` claims."""
    runtime = with_controller(runtime, concurrency=CONCURRENCY)
    loop = Daemon(runtime, config_path=None, metrics=Metrics(), replica_id="t").claims
    visit = asyncio.create_task(asyncio.sleep(60))
    for _ in range(held):
        org_id = uuid.uuid4()
        loop.inflight[org_id] = (Claim(org_id, 1, 1, 0, Lane.BULK), visit)
    loop._wrote_at = time.monotonic()
    try:
        yield loop
    finally:
        visit.cancel()


@contextlib.asynccontextmanager
async def gathering(loop: ClaimLoop) -> AsyncIterator[asyncio.Task[int]]:
    """``loop`` gathering free slots to claim, in a task of its own."""
    task = asyncio.create_task(loop._gathered(asyncio.Event()))
    try:
        yield task
    finally:
        task.cancel()


@pytest.fixture
def long_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claims, "GATHER_SECONDS", 30.0)
    monkeypatch.setattr(claims, "WRITING_SECONDS", 3600.0)  # writing all through the test


@pytest.mark.usefixtures("long_gather")
async def test_a_claim_waits_for_more_free_slots_while_visits_write(runtime: Runtime) -> None:
    async with busy_writing(runtime, held=CONCURRENCY - 1) as loop, gathering(loop) as task:
        await asyncio.sleep(0.3)
        assert not task.done(), "one free slot of four is not worth a claim yet"

        loop.inflight.popitem()
        loop.wake.set()  # a visit ended: two free slots are
        assert await asyncio.wait_for(task, 5) == 2


@pytest.mark.usefixtures("long_gather")
async def test_an_announced_change_ends_the_wait_for_free_slots(runtime: Runtime) -> None:
    async with busy_writing(runtime, held=CONCURRENCY - 1) as loop, gathering(loop) as task:
        await asyncio.sleep(0.3)
        assert not task.done()

        loop.changed(str(uuid.uuid4()))  # as the listener does on NOTIFY
        loop.wake.set()
        assert await asyncio.wait_for(task, 5) == 1


@pytest.mark.usefixtures("long_gather")
async def test_visits_done_with_vapi_and_waiting_for_their_commit_leave_room_to_claim(
    runtime: Runtime,
) -> None:
    async with busy_writing(runtime, held=CONCURRENCY) as loop:
        assert loop._room() == 0
        loop.settling.update(list(loop.inflight)[:2])  # as ``ClaimRecorder.record`` does
        assert loop._room() == 2


@pytest.mark.usefixtures("long_gather")
async def test_a_change_announced_during_a_visit_ends_the_next_wait_for_free_slots(
    runtime: Runtime,
) -> None:
    async with busy_writing(runtime, held=CONCURRENCY - 1) as loop:
        (edited, (claimed, visit)) = next(iter(loop.inflight.items()))
        started = time.monotonic()
        loop.changed(str(edited))  # the organization is being visited: no claim can take it
        loop._claimed_at = time.monotonic()  # a claim since
        loop._ended(claimed, started)
        loop.inflight[uuid.uuid4()] = (claimed, visit)  # one slot free: not worth a claim
        async with gathering(loop) as task:
            assert await asyncio.wait_for(task, 5) == 1
