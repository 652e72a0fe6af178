"""429 storms and 5xx: the pass converges, never duplicates, never exceeds its rate."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import Settings
from controller.reconcile.full_pass import reconcile_pass
from controller.runtime import open_runtime
from controller.secret import MasterKey
from controller.simulator import SimulatorState, SimulatorTransport
from desired_state.sample import seed_clinics
from tests.conftest import TEST_KEY, make_settings
from tests.integration.helpers import writes

RATE = 40.0
BURST = 5


def busiest_second(arrivals: list[float]) -> int:
    """The most requests that arrived within any one-second window."""
    most, start = 0, 0
    for end, moment in enumerate(arrivals):
        while arrivals[start] <= moment - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.fixture
def limited(database_url: str) -> Settings:
    return make_settings(
        database_url, vapi={"rate_limit_per_second": RATE, "burst": BURST, "max_attempts": 8}
    )


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
async def test_a_429_storm_still_converges_without_duplicates_or_exceeding_the_rate(
    platform: AsyncEngine, limited: Settings, sim: SimulatorState, retry_after: bool
) -> None:
    sim.faults.rate_limit_per_second = RATE / 2
    sim.faults.rate_limit_burst = 2
    sim.faults.retry_after = retry_after
    async with open_runtime(
        limited, key=MasterKey(TEST_KEY), transport=SimulatorTransport(sim)
    ) as runtime:
        async with platform.begin() as conn:
            await seed_clinics(conn, 8)
        outcome = await reconcile_pass(runtime)

    assert outcome.converged
    assert sum(c for (_, _, s), c in sim.requests.items() if s == 429) > 0
    assert len(sim.objects["assistant"]) == 16
    assert len(writes(sim, "POST")) == 16 + 6
    assert busiest_second(sim.arrivals) <= RATE + BURST


async def test_random_5xx_converge_within_a_few_passes_without_duplicates(
    platform: AsyncEngine, limited: Settings, sim: SimulatorState
) -> None:
    sim.faults.error_rate = 0.25
    async with open_runtime(
        limited, key=MasterKey(TEST_KEY), transport=SimulatorTransport(sim)
    ) as runtime:
        async with platform.begin() as conn:
            await seed_clinics(conn, 8)
        converged = False
        for _ in range(8):
            if (await reconcile_pass(runtime)).converged:
                converged = True
                break
    assert sum(c for (_, _, s), c in sim.requests.items() if s == 503) > 0
    assert converged
    assert len(sim.objects["assistant"]) == 16
    assert len(sim.objects["tool"]) == 6
    assert busiest_second(sim.arrivals) <= RATE + BURST
