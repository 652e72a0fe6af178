"""``/healthz``, ``/readyz`` and ``/metrics`` (CONTRACT section 6), served in the daemon's own
event loop. Signals belong to the daemon, not to uvicorn."""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import contextmanager

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from controller.daemon.metrics import Metrics


def health_app(
    *, alive: Callable[[], bool], ready: Callable[[], tuple[bool, str]], metrics: Metrics
) -> Starlette:
    async def healthz(request: Request) -> Response:
        ok = alive()
        return PlainTextResponse("ok\n" if ok else "stalled\n", status_code=200 if ok else 503)

    async def readyz(request: Request) -> Response:
        ok, why = ready()
        return PlainTextResponse(f"{why}\n", status_code=200 if ok else 503)

    async def metrics_page(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_page),
        ]
    )


class HealthServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def health_server(app: Starlette, listen: str) -> HealthServer:
    host, _, port = listen.rpartition(":")
    config = uvicorn.Config(
        app,
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    return HealthServer(config)
