"""The simulator as an in-process httpx transport (no socket, no patching)."""

from __future__ import annotations

import httpx

from controller.simulator.app import ResponseDropped, create_app
from controller.simulator.state import SimulatorState


class SimulatorTransport(httpx.AsyncBaseTransport):
    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self._inner = httpx.ASGITransport(app=create_app(state, drop_mode="raise"))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except ResponseDropped:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from None
