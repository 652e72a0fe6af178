"""The HTTP transport under the Vapi client: httpx's API over aiohttp's connection pool.

httpx stays the client (the product's design names it, and tests hand it the simulator's
transport); aiohttp moves the bytes. Per request it costs about a fifth of httpcore's CPU
(issue 17: 0.6 ms against 2.7 ms per POST on the benchmark machine), and it sets
TCP_NODELAY on every connection.

``httpx_aiohttp`` maps every aiohttp connection error to ``httpx.ConnectTimeout``: a refused
connection, a connection dropped after the request went out, a read timeout alike. The client
must tell "never sent" (a POST may be retried) from "sent, no answer" (it may not), and an
operator a timeout from a dropped connection, so each is handed on as what it was.

The TLS context (its CA certificates take ~20 ms to load) is put in on the first request,
not at construction, so that start-up can load it beside its own waiting
(``controller.warmup``).
"""

from __future__ import annotations

import ssl
import threading
from functools import cache

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

_TLS_LOCK = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi's CAs), made once per process."""
    with _TLS_LOCK:
        return _tls_context()


@cache
def _tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=False)


class VapiTransport(AiohttpTransport):
    def __init__(self, *, limits: httpx.Limits) -> None:
        # No CA loaded yet: it verifies nothing and is replaced before any connection.
        unloaded = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        super().__init__(limits=limits, trust_env=False, verify=unloaded)

    def get_client(self) -> aiohttp.ClientSession:
        self.ssl_context = tls_context()
        return super().get_client()

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


def vapi_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    return VapiTransport(limits=limits)
