"""httpx's API over aiohttp's connection pool: the transport every Vapi request goes through.

httpx stays the client (the product's design names it, and tests hand it the simulator's
transport); aiohttp moves the bytes. Per request it costs about a fifth of httpcore's CPU
(issue 17: 0.6 ms against 2.7 ms per POST on the benchmark machine), and it sets
TCP_NODELAY on every connection.

``httpx_aiohttp`` maps every aiohttp connection error to ``httpx.ConnectTimeout``: a refused
connection, a connection dropped after the request went out, a read timeout alike. The client
must tell "never sent" (a POST may be retried) from "sent, no answer" (it may not), and an
operator a timeout from a dropped connection, so each is handed on as what it was.

Imported only once the first request is made (``controller.vapi.transport``): aiohttp is
about a sixth of the command line's import time.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from controller.vapi.transport import tls_context


class AiohttpVapiTransport(AiohttpTransport):
    def __init__(self, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False, verify=tls_context())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ServerTimeoutError):
                raise httpx.ReadTimeout(str(exc), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectorError):  # never connected
                raise httpx.ConnectError(str(exc), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectionError):  # sent, then dropped
                raise httpx.ReadError(str(exc), request=request) from cause
            raise
