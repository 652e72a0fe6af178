"""The simulator served on a real loopback socket answers keep-alive requests without waiting
out a delayed ACK (``TCP_NODELAY``), so benchmarks measure the controller, not Nagle.

Serves in a thread of this process through the same ``listening_socket`` and ``make_server``
that ``python -m controller.simulator`` uses; must not patch or sleep to wait for the server.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from controller.simulator import SimulatorState
from controller.simulator.__main__ import listening_socket, make_server

KEY = "socket-test-key"
REQUESTS = 20
MEAN_BOUND_SECONDS = 0.015
"""Generous: about 1 ms with TCP_NODELAY, about 44 ms without (the delayed ACK)."""


@contextmanager
def served_on_loopback(state: SimulatorState) -> Iterator[str]:
    sock = listening_socket("127.0.0.1", 0)
    sock.listen()  # connections queue in the kernel until the server accepts: no start-up race
    server = make_server(state)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),))
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_the_listening_socket_says_tcp_so_asyncio_sets_nodelay_on_each_connection() -> None:
    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.type == socket.SOCK_STREAM
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_sequential_keep_alive_requests_do_not_wait_for_a_delayed_ack() -> None:
    state = SimulatorState(account_key=KEY)
    with (
        served_on_loopback(state) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as client,
    ):
        client.get("/assistant").raise_for_status()  # opens the one kept-alive connection
        durations = []
        for _ in range(REQUESTS):
            started = time.perf_counter()
            client.get("/assistant").raise_for_status()
            durations.append(time.perf_counter() - started)

    assert state.requests[("GET", "/assistant", 200)] == REQUESTS + 1
    assert statistics.mean(durations) < MEAN_BOUND_SECONDS, durations
