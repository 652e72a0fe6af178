"""One guarded wrapper for every part of the daemon.

A failure of Postgres or Vapi is reported to ``Health`` (readiness, alert conditions) and
waited out by the part's next turn. So is a set-up problem met while running (a
``PlatformShapeError`` from loading the desired state: the platform's tables hide part of
it): the daemon is not ready and acts on nothing until it is fixed; it is not a bug.
Anything else is a bug: logged at ERROR with its traceback and counted, never allowed to
stop the daemon. Only a signal stops it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from loguru import logger

from controller.daemon.health import Health
from controller.daemon.metrics import Metrics
from controller.preflight import SetupError
from controller.reconcile.chain import OUTAGES
from desired_state.shape import PlatformShapeError

T = TypeVar("T")

SET_UP_WRONG = (SetupError, PlatformShapeError)
"""Not an outage and not a bug: the database is not set up for this controller."""


class Guard:
    def __init__(self, health: Health, metrics: Metrics) -> None:
        self.health = health
        self.metrics = metrics

    async def run(self, what: str, step: Callable[[], Awaitable[T]]) -> T | None:
        """``step()``, or None when it failed (reported as above)."""
        try:
            return await step()
        except (*OUTAGES, *SET_UP_WRONG) as exc:
            self.health.failure(exc)
        except Exception as exc:
            self.metrics.internal_errors.labels(what).inc()
            logger.opt(exception=exc).error("internal error in {}: {}", what, type(exc).__name__)
        return None
