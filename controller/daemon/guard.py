"""One guarded wrapper for every part of the daemon.

A failure of Postgres or Vapi is reported to ``Health`` (readiness, alert conditions) and
waited out by the part's next turn; anything else is a bug: logged at ERROR with its
traceback and counted, never allowed to stop the daemon. Only a signal stops it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from loguru import logger

from controller.daemon.health import Health
from controller.daemon.metrics import Metrics
from controller.reconcile.chain import OUTAGES

T = TypeVar("T")


class Guard:
    def __init__(self, health: Health, metrics: Metrics) -> None:
        self.health = health
        self.metrics = metrics

    async def run(self, what: str, step: Callable[[], Awaitable[T]]) -> T | None:
        """``step()``, or None when it failed (reported as above)."""
        try:
            return await step()
        except OUTAGES as exc:
            self.health.failure(exc)
        except Exception as exc:
            self.metrics.internal_errors.labels(what).inc()
            logger.opt(exception=exc).error("internal error in {}: {}", what, type(exc).__name__)
        return None
