"""The HTTP transport under the Vapi client, made at its first request.

The transport itself (``controller.vapi.aiohttp_transport``: httpx over aiohttp) and its TLS
context are not needed before the first request, and making them is a noticeable part of a
command's start-up: importing aiohttp (with its own TLS contexts) and loading the CA
certificates. Made on first use, both can be prepared beside start-up's own waiting on
Postgres (``controller.warmup``) instead of before it (issue 17: the first write within
0.8 s of process start).
"""

from __future__ import annotations

import ssl
import threading
from functools import cache

import httpx

_TLS_LOCK = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi's CAs), made once per process."""
    with _TLS_LOCK:
        return _tls_context()


@cache
def _tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=False)


class VapiTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, limits: httpx.Limits) -> None:
        self._limits = limits
        self._made: httpx.AsyncBaseTransport | None = None

    def _transport(self) -> httpx.AsyncBaseTransport:
        """The transport requests go through (made now if it was not yet)."""
        if self._made is None:
            from controller.vapi.aiohttp_transport import AiohttpVapiTransport

            self._made = AiohttpVapiTransport(limits=self._limits)
        return self._made

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport().handle_async_request(request)

    async def aclose(self) -> None:
        if self._made is not None:
            await self._made.aclose()


def vapi_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    return VapiTransport(limits=limits)
