"""``python -m bench.simulator``: the simulator as the benchmarks serve it, the same as
``python -m controller.simulator`` (same options, same first line) plus two routes:
``GET /_bench/arrivals``, the ``time.monotonic()`` of every API request received, refused
ones (429) included, so a benchmark can find the busiest second of the combined request
rate of all the daemons it runs; ``GET /_bench/refused``, the arrival times of the requests
answered 429, so it can tell when they happened.

Must not change how the simulator answers anything else: the app is wrapped, not edited.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvicorn
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.simulator.__main__ import LOOPBACK, listening_socket
from controller.simulator.app import create_app
from controller.simulator.faults import Faults
from controller.simulator.state import SimulatorState

ARRIVALS, REFUSED = "/_bench/arrivals", "/_bench/refused"


def with_arrivals(app: ASGIApp, state: SimulatorState) -> ASGIApp:
    refused: list[float] = []

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim/"):
            await app(scope, receive, send)
        elif scope["path"] in (ARRIVALS, REFUSED):
            moments = state.arrivals if scope["path"] == ARRIVALS else refused
            await JSONResponse(moments)(scope, receive, send)
        else:
            arrived = time.monotonic()  # as the app stamps it in ``arrivals``

            async def answer(message: Message) -> None:
                if message["type"] == "http.response.start" and message["status"] == 429:
                    refused.append(arrived)
                await send(message)

            await app(scope, receive, answer)

    return serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", choices=LOOPBACK)
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
    app = with_arrivals(create_app(state), state)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
