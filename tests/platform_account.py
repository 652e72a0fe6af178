"""Plays the platform against the simulator: builds the Vapi account the platform's own sync
makes today (platform/SYNC.md), through the simulator's HTTP API only.

Exists so adoption tests start from the account the controller meets on its first day, not
from one the controller made. Must not import the controller or touch the simulator's state
directly: what it builds, the platform could have built.
"""

from __future__ import annotations

import httpx

from controller.simulator import SimulatorState, SimulatorTransport


def simulator_client(sim: SimulatorState) -> httpx.AsyncClient:
    """An HTTP client to an in-process simulator, with its account key."""
    return httpx.AsyncClient(
        transport=SimulatorTransport(sim),
        base_url="http://vapi.test",
        headers={"Authorization": f"Bearer {sim.account_key}"},
    )
