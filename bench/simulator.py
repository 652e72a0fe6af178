"""``python -m bench.simulator``: the simulator as the benchmarks serve it, the same as
``python -m controller.simulator`` (same options, same first line) plus two routes:
``GET /_bench/arrivals``, the ``time.monotonic()`` of every API request received, refused
ones (429) included, so a benchmark can find the busiest second of the combined request
rate of all the daemons it runs; ``GET /_bench/refused``, the arrival times of the requests
answered 429, so it can tell when they happened.

Must not change how the simulator answers anything else: the app is wrapped, not edited.
"""

from __future__ import annotations

import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.simulator.__main__ import main as serve
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
    serve(with_arrivals)


if __name__ == "__main__":
    main()
