"""LISTEN vapi_reconciler: a wake-up hint from the change triggers. Losing it costs latency,
never correctness: the work rows are polled anyway."""

from __future__ import annotations

import asyncio

import psycopg
from loguru import logger
from sqlalchemy.engine import make_url

CHANNEL = "vapi_reconciler"


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(url: str, wake: asyncio.Event, *, retry_seconds: float = 2.0) -> None:
    """Set ``wake`` on every notification, reconnecting forever."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                libpq_url(url), autocommit=True
            ) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                wake.set()
                async for _ in conn.notifies():
                    wake.set()
        except (psycopg.Error, OSError) as exc:
            logger.warning(
                "LISTEN connection lost ({}); polling until it is back", type(exc).__name__
            )
        await asyncio.sleep(retry_seconds)
