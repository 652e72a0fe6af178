"""The production transport (httpx over aiohttp) on real loopback sockets: a POST that never
reached a server is retried; one that did and got no answer is never repeated."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx
import pytest

from controller.secret import MasterKey
from controller.vapi import client as vapi_client
from controller.vapi.aiohttp_transport import AiohttpVapiTransport
from controller.vapi.client import VapiClient
from controller.vapi.errors import OutcomeUnknownError, VapiConnectionError
from controller.vapi.ratelimit import RateLimiter
from controller.vapi.transport import tls_context


def client(port: int) -> VapiClient:
    return VapiClient(
        base_url=f"http://127.0.0.1:{port}",
        key=MasterKey("k" * 24),
        limiter=RateLimiter(rate=1000, burst=100),
        max_attempts=3,
        timeout_seconds=2,
    )


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vapi_client, "_backoff", lambda attempt: 0.01)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_not_sent_so_a_post_is_retried() -> None:
    vapi = client(unused_port())
    with pytest.raises(VapiConnectionError) as raised:
        await vapi.create("tool", {"type": "function"})
    await vapi.aclose()

    assert not isinstance(raised.value, OutcomeUnknownError)
    assert sum(vapi.calls.values()) == 3  # every attempt, none of them reached a server


async def test_a_connection_dropped_after_the_request_makes_a_post_unknown_sent_once() -> None:
    received: list[bytes] = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    vapi = client(server.sockets[0].getsockname()[1])
    with pytest.raises(OutcomeUnknownError, match="connection failed"):
        await vapi.create("tool", {"type": "function"})
    await vapi.aclose()
    server.close()

    assert len(received) == 1
    assert [status for (_, _, status) in vapi.calls] == ["VapiConnectionError"]


async def test_every_connection_verifies_vapi_against_the_certificate_authorities() -> None:
    transport = AiohttpVapiTransport(limits=httpx.Limits(max_connections=4))

    session = transport.get_client()
    try:
        context = session.connector._ssl  # type: ignore[union-attr]
        assert context is tls_context()
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        assert context.cert_store_stats()["x509_ca"] > 0
    finally:
        await session.close()
