"""No duplicates, whatever crashes, lost responses or restarts happen."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import Settings
from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.observe import ObservedCache
from controller.reconcile.runtime import Runtime
from controller.runtime import open_runtime
from controller.secret import MasterKey
from controller.simulator import ScriptedFault, SimulatorState, SimulatorTransport
from desired_state import records
from desired_state.direct import direct
from desired_state.records import Intent
from desired_state.sample import seed_clinics
from tests.conftest import TEST_KEY
from tests.integration.helpers import assistant_of_agent, writes


class ProcessDied(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


class DiesAfterPost(httpx.AsyncBaseTransport):
    """Lets the ``nth`` POST to ``path`` reach Vapi and get its answer, then the process dies
    before anything is written to Postgres."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, path: str, nth: int) -> None:
        self.inner = inner
        self.path = path
        self.remaining = nth

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == self.path:
            self.remaining -= 1
            if self.remaining == 0:
                await response.aread()
                raise ProcessDied
        return response


@pytest.mark.parametrize("path", ["/assistant", "/tool"])
async def test_a_crash_between_the_post_and_the_database_write_leaves_no_duplicate(
    platform: AsyncEngine, settings: Settings, sim: SimulatorState, path: str
) -> None:
    dying = DiesAfterPost(SimulatorTransport(sim), path=path, nth=1)
    async with open_runtime(settings, key=MasterKey(TEST_KEY), transport=dying) as runtime:
        async with platform.begin() as conn:
            clinics = await seed_clinics(conn, 2)
        with pytest.raises(ProcessDied):
            await reconcile_pass(runtime)
    created_before_restart = len(writes(sim, "POST"))

    async with open_runtime(
        settings, key=MasterKey(TEST_KEY), transport=SimulatorTransport(sim)
    ) as restarted:
        outcome = await reconcile_pass(restarted)

    assert outcome.converged
    assert len(sim.objects["tool"]) == 6
    assert len(sim.objects["assistant"]) == 4
    assert len(writes(sim, "POST")) == 6 + 4
    assert created_before_restart >= 1
    for clinic in clinics:
        for agent_id in clinic.agent_ids:
            assistant_of_agent(sim, agent_id)


@pytest.mark.parametrize("fault", ["drop", "timeout"])
@pytest.mark.parametrize("route", ["/assistant", "/tool"])
async def test_a_post_whose_response_is_lost_is_adopted_not_repeated(
    platform: AsyncEngine, settings: Settings, sim: SimulatorState, fault: str, route: str
) -> None:
    sim.faults.timeout_seconds = 5
    sim.faults.scripted = [ScriptedFault(fault, "POST", route, count=2)]  # type: ignore[arg-type]
    fast = settings.model_copy(
        update={"vapi": settings.vapi.model_copy(update={"timeout_seconds": 0.3})}
    )
    async with open_runtime(
        fast, key=MasterKey(TEST_KEY), transport=SimulatorTransport(sim)
    ) as runtime:
        async with platform.begin() as conn:
            clinics = await seed_clinics(conn, 2)
        first = await reconcile_pass(runtime)
        assert not first.converged
        second = await reconcile_pass(runtime)
        third = await reconcile_pass(runtime)

    assert second.converged or third.converged
    assert len(sim.objects["tool"]) == 6
    assert len(sim.objects["assistant"]) == 4
    assert len(writes(sim, "POST")) == 10
    for clinic in clinics:
        for agent_id in clinic.agent_ids:
            assistant_of_agent(sim, agent_id)


async def test_a_refused_post_leaves_no_doubt_behind(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    sim.faults.scripted = [ScriptedFault("400", "POST", "/assistant", count=1)]
    async with platform.begin() as conn:
        await seed_clinics(conn, 1)

    first = await reconcile_pass(runtime)
    async with runtime.engine.connect() as conn:
        doubts = await conn.execute(
            text("select count(*) from reconciler.vapi_objects where state = 'creating'")
        )
        assert doubts.scalar_one() == 0
    second = await reconcile_pass(runtime)

    assert not first.converged
    assert second.converged
    assert len(writes(sim, "POST")) == 6 + 2


async def test_dropping_an_intent_spares_one_another_replica_recorded_since(
    runtime: Runtime,
) -> None:
    """A replica that lost its claim withdraws its unsent creates; the replica that took the
    organization over may have recorded its own intent for the same agent meanwhile, and
    that doubt must survive (else a lost answer to its POST could end in a duplicate)."""
    org, agent = uuid.uuid4(), str(uuid.uuid4())
    intent = Intent("assistant", agent, org)
    async with direct(runtime.engine).connection() as hot:
        stale = await records.record_intents(hot, [intent])
        await records.record_intents(hot, [intent])  # the new owner's, a later statement
    async with runtime.engine.connect() as conn:
        await records.drop_intents(conn, stale)
        await conn.commit()
        kept = await conn.scalar(
            text("select count(*) from reconciler.vapi_objects where state = 'creating'")
        )
        async with direct(runtime.engine).connection() as hot:
            recorded = await records.record_intents(hot, [intent])
        await records.drop_intents(conn, recorded)
        dropped = await conn.scalar(
            text("select count(*) from reconciler.vapi_objects where state = 'creating'")
        )

    assert (kept, dropped) == (1, 0)


async def test_concurrent_doubts_share_one_confirming_listing(
    settings: Settings, sim: SimulatorState
) -> None:
    async with open_runtime(
        settings, key=MasterKey(TEST_KEY), transport=SimulatorTransport(sim)
    ) as runtime:
        cache = ObservedCache(runtime.client)
        doubted_before = time.monotonic()
        since = datetime.now(UTC)
        await asyncio.gather(
            *(cache.confirm_since(since, doubted_before=doubted_before) for _ in range(10))
        )
        shared = sim.requests[("GET", "/assistant", 200)]
        await cache.confirm_since(since, doubted_before=time.monotonic())

    assert shared == 1
    assert sim.requests[("GET", "/assistant", 200)] == 2  # a doubt newer than that listing
