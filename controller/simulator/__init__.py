"""A faithful, stateful Vapi simulator for tests, benchmarks and the demo.

Behaves as VAPI.md says the real API does (bare-array lists capped per page, newest first,
date filters, server-filled defaults, shallow PATCH, class-validator-style 400s, 404/409) and
takes injected faults (latency, 429 with or without Retry-After, 5xx, timeouts, committed
POSTs whose response is lost). Must not import the controller: it stands for Vapi.
"""

from controller.simulator.app import create_app
from controller.simulator.faults import Faults, ScriptedFault
from controller.simulator.state import SimulatorState
from controller.simulator.transport import SimulatorTransport

__all__ = ["Faults", "ScriptedFault", "SimulatorState", "SimulatorTransport", "create_app"]
