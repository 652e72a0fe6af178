"""Evaluate thresholds and deliver alerts: the daemon runs both as periodic jobs, beside
reconciling, never in its way."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.alerting.sinks import SinkError, Sinks
from controller.config import AlertingSettings
from controller.secret import redact
from desired_state import alerts
from desired_state.alerts import Delivery

CONTROLLER_CONDITIONS = (
    "vapi_key_rejected",
    "postgres_unreachable",
    "rate_limit_saturated",
    "desired_state_not_visible",
)


@dataclass
class Alerter:
    engine: AsyncEngine
    sinks: Sinks
    settings: AlertingSettings
    fired: int = 0
    resolved: int = 0
    sink_failures: int = 0
    _since: dict[str, float] = field(default_factory=dict)
    """Controller-wide condition -> wall time it was first seen, while it lasts."""
    _direct: set[str] = field(default_factory=set)
    """Controller incidents sent without Postgres (it was unreachable)."""

    async def evaluate(self) -> None:
        """Open incidents past the threshold, resolve converged ones."""
        async with self.engine.begin() as conn:
            opened = await alerts.open_incidents(
                conn,
                after_seconds=self.settings.unreconciled_after_seconds,
                failures=self.settings.failures_before_alert,
                sinks=self.sinks.names,
            )
            closed = await alerts.resolve_incidents(conn, sinks=self.sinks.names)
        self.fired += len(opened)
        self.resolved += len(closed)
        if opened or closed:
            logger.info("alerts: {} opened, {} resolved", len(opened), len(closed))

    async def deliver(self, *, limit: int = 50) -> int:
        """Send due deliveries; returns how many went out."""
        lease = self.settings.delivery_timeout_seconds * 3
        async with self.engine.begin() as conn:
            due = await alerts.claim_deliveries(conn, limit=limit, lease_seconds=lease)
        sent = 0
        for delivery in due:
            error = await self._send(delivery)
            sent += error is None
            async with self.engine.begin() as conn:
                await alerts.finish_delivery(
                    conn, delivery, error=error, retry_in=self._backoff(delivery.attempts)
                )
        return sent

    def condition(self, name: str, *, present: bool) -> None:
        """A controller-wide condition began (or goes on) or ended."""
        if present:
            self._since.setdefault(name, time.time())
        else:
            self._since.pop(name, None)

    async def evaluate_controller(self, *, postgres_up: bool) -> None:
        threshold = self.settings.controller_down_after_seconds
        now = time.time()
        for name in CONTROLLER_CONDITIONS:
            began = self._since.get(name)
            firing = began is not None and now - began >= threshold
            if not postgres_up:
                await self._direct_send(name, firing, began)
                continue
            since = datetime.fromtimestamp(began, UTC) if began else None
            async with self.engine.begin() as conn:
                await alerts.set_controller_incident(
                    conn,
                    key=f"controller:{name}",
                    firing=firing,
                    reason=name,
                    message=f"nothing can be reconciled: {name.replace('_', ' ')}",
                    since=since,
                    sinks=self.sinks.names,
                )

    async def _direct_send(self, name: str, firing: bool, began: float | None) -> None:
        """Postgres is down, so no outbox: send once per incident from memory."""
        if firing == (name in self._direct):
            return
        now = datetime.now(UTC)
        since = datetime.fromtimestamp(began, UTC) if began else now
        for sink in self.sinks.names:
            delivery = Delivery(
                0,
                sink,
                "firing" if firing else "resolved",
                1,
                0,
                f"controller:{name}",
                None,
                name,
                f"nothing can be reconciled: {name.replace('_', ' ')}",
                since,
                since,
                None if firing else now,
            )
            await self._send(delivery)
        (self._direct.add if firing else self._direct.discard)(name)

    async def _send(self, delivery: Delivery) -> str | None:
        try:
            await self.sinks.send(delivery)
        except SinkError as exc:
            self.sink_failures += 1
            logger.warning(
                "alert {} to {} failed (attempt {}): {}",
                delivery.event,
                delivery.sink,
                delivery.attempts,
                exc,
            )
            return redact(str(exc))[:500]
        return None

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self.settings.delivery_backoff_max_seconds, 2.0 ** min(attempts, 20))
        return ceiling * (0.5 + random.random() / 2)
