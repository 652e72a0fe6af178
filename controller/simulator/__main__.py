"""``python -m controller.simulator``: serve the simulator on a loopback port.

Prints ``listening on http://HOST:PORT`` once ready (port 0 picks a free one). Faults can be
set at start or later through ``POST /_sim/faults``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp

from controller.simulator.app import create_app
from controller.simulator.faults import Faults
from controller.simulator.state import SimulatorState

LOOPBACK = ("127.0.0.1", "::1", "localhost")
Wrap = Callable[[ASGIApp, SimulatorState], ASGIApp]


def main(wrap: Wrap | None = None) -> None:
    """``wrap``: an ASGI app around the simulator's own (the benchmarks' request log)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        choices=LOOPBACK,
        help="loopback only: the simulator is never exposed",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--key", required=True, help="the key the simulator accepts")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--rate", type=float, default=None, help="requests/s before 429s")
    parser.add_argument("--burst", type=int, default=10, help="requests allowed back to back")
    parser.add_argument("--page-cap", type=int, default=100, help="most items a list returns")
    args = parser.parse_args()
    state = SimulatorState(
        account_key=args.key,
        faults=Faults(
            latency_seconds=args.latency,
            rate_limit_per_second=args.rate,
            rate_limit_burst=args.burst,
            page_cap=args.page_cap,
        ),
    )
    sock = listening_socket(args.host, args.port)
    print(f"listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    asyncio.run(make_server(state, wrap).serve(sockets=[sock]))


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket whose accepted connections get ``TCP_NODELAY``.

    asyncio sets ``TCP_NODELAY`` on a connection only when its socket says
    ``proto == IPPROTO_TCP``; a socket made with the default proto 0 never gets it, so every
    keep-alive answer waits out the client's delayed ACK (about 40 ms on Linux).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def make_server(state: SimulatorState, wrap: Wrap | None = None) -> uvicorn.Server:
    app = create_app(state)
    return uvicorn.Server(
        uvicorn.Config(
            wrap(app, state) if wrap else app, log_level="warning", access_log=False, lifespan="off"
        )
    )


if __name__ == "__main__":
    main()
