"""``/healthz``, ``/readyz`` and ``/metrics`` (CONTRACT section 6), served in the daemon's own
event loop. Signals belong to the daemon, not to uvicorn."""

from __future__ import annotations

import socket
from collections.abc import Callable, Generator
from contextlib import contextmanager

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from controller.daemon.metrics import Metrics
from controller.preflight import ListenError


def health_app(
    *,
    alive: Callable[[], tuple[bool, str]],
    ready: Callable[[], tuple[bool, str]],
    metrics: Metrics,
) -> Starlette:
    async def healthz(request: Request) -> Response:
        ok, why = alive()
        return PlainTextResponse(f"{why}\n", status_code=200 if ok else 503)

    async def readyz(request: Request) -> Response:
        ok, why = ready()
        return PlainTextResponse(f"{why}\n", status_code=200 if ok else 503)

    async def metrics_page(request: Request) -> Response:
        await metrics.refresh()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_page),
        ]
    )


class HealthServer(uvicorn.Server):
    """Bound at construction, so a port in use is a set-up error before anything starts."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket) -> None:
        super().__init__(config)
        self.sock = sock

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(sockets=sockets or [self.sock])

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def health_server(app: Starlette, host_port: tuple[str, int]) -> HealthServer:
    host, port = host_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or "127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"[server] listen {host}:{port}: {exc.strerror or exc} "
            "(choose a free port or stop what holds it)"
        ) from None
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    return HealthServer(config, sock)
