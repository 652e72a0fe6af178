"""LISTEN vapi_reconciler: a wake-up hint from the change triggers. Losing it costs latency,
never correctness: the work rows are polled anyway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
from loguru import logger
from sqlalchemy.engine import make_url

from desired_state.queue import REPLICAS

CHANNEL = "vapi_reconciler"
GONE = "vapi_reconciler_gone"
"""Payload ``<resource>:<vapi id>``: a replica deleted that object in Vapi."""


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(
    url: str,
    wake: asyncio.Event,
    *,
    on_change: Callable[[str], None] = lambda _: None,
    on_gone: Callable[[str], None] = lambda _: None,
    on_replicas: Callable[[], None] = lambda: None,
    retry_seconds: float = 2.0,
) -> None:
    """Set ``wake`` on every change notification (and hand its payload, an organization id,
    to ``on_change``); hand deletions by other replicas to ``on_gone``; call ``on_replicas``
    when a replica joins or leaves, and on every (re)connection (one may have joined while
    nobody listened); reconnect forever."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                libpq_url(url), autocommit=True
            ) as conn:
                for channel in (CHANNEL, GONE, REPLICAS):
                    await conn.execute(f"LISTEN {channel}")
                wake.set()
                on_replicas()
                async for note in conn.notifies():
                    if note.channel == REPLICAS:
                        on_replicas()
                        continue
                    (on_gone if note.channel == GONE else on_change)(note.payload)
                    wake.set()
        except (psycopg.Error, OSError) as exc:
            logger.warning(
                "LISTEN connection lost ({}); polling until it is back", type(exc).__name__
            )
        await asyncio.sleep(retry_seconds)
