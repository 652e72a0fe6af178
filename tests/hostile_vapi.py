"""A hostile "Vapi" on a loopback socket: answers whatever a test scripts, byte by byte.

Raw asyncio streams rather than an HTTP framework, so it can lie in ways a framework would
not let it: trickle a body, stream one without end, send broken JSON or redirect elsewhere.
It records every request's head (to prove which credentials reached which host).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

Writer = asyncio.StreamWriter
Answer = Callable[[Writer], Awaitable[None]]


@dataclass
class HostileServer:
    answer: Answer
    heads: list[str] = field(default_factory=list)
    url: str = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = next(
                (
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length:")
                ),
                0,
            )
            if length:
                await reader.readexactly(length)
            self.heads.append(head)
            await self.answer(writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client hung up, or the server closed under an endless answer
        finally:
            writer.close()


@asynccontextmanager
async def hostile_server(answer: Answer) -> AsyncIterator[HostileServer]:
    server = HostileServer(answer)
    listening = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listening.close()
        await listening.wait_closed()


def respond(status: str, body: bytes, headers: dict[str, str] | None = None) -> Answer:
    """A complete answer: status line, headers, body."""

    async def answer(writer: Writer) -> None:
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    return answer


def endless(chunk: bytes, *, pause: float = 0.0) -> Answer:
    """A chunked 200 that never ends: ``chunk`` after ``chunk``, ``pause`` apart."""

    async def answer(writer: Writer) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        while True:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
            await asyncio.sleep(pause)

    return answer
