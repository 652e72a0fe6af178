"""Build what a command needs from settings: the database engine, the Vapi client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from controller.config import Settings
from controller.reconcile.runtime import Runtime
from controller.secret import MasterKey, register_secret
from controller.vapi.client import VapiClient
from controller.vapi.ratelimit import RateLimiter
from desired_state.direct import dispose
from desired_state.engine import IDLE_IN_TRANSACTION_SECONDS, async_engine


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    key: MasterKey,
    transport: httpx.AsyncBaseTransport | None = None,
    observer: Callable[[str, str, str, float], None] | None = None,
) -> AsyncIterator[Runtime]:
    settings.require_backend_url()
    register_secret(key)
    vapi = settings.vapi
    engine = async_engine(
        settings.database.url,
        pool_size=settings.controller.concurrency + 2,
        idle_in_transaction_seconds=IDLE_IN_TRANSACTION_SECONDS,
    )
    client = VapiClient(
        base_url=vapi.base_url,
        key=key,
        limiter=RateLimiter(rate=vapi.rate_limit_per_second, burst=vapi.burst),
        transport=transport,
        timeout_seconds=vapi.timeout_seconds,
        max_attempts=vapi.max_attempts,
        page_limit=vapi.page_limit,
        observer=observer,
    )
    try:
        yield Runtime(engine=engine, client=client, settings=settings)
    finally:
        await client.aclose()
        await dispose(engine)
