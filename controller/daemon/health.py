"""What the daemon knows of its own health: liveness (the claim loop turns), readiness
(Postgres and Vapi answer), and the controller-wide alert conditions its failures raise."""

from __future__ import annotations

import time

from loguru import logger

from controller.alerting.alerter import Alerter
from controller.core.outcome import OrgOutcome
from controller.secret import redact
from controller.vapi.errors import RateLimitedError, UnauthorizedError, VapiError

STALL_SECONDS = 30.0


class Health:
    def __init__(self, alerter: Alerter, replica_id: str) -> None:
        self.alerter = alerter
        self.replica_id = replica_id
        self.db_ok = False
        self.vapi_ok = False
        self._beat = time.monotonic()

    def beat(self) -> None:
        self._beat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self._beat < STALL_SECONDS

    def readiness(self) -> tuple[bool, str]:
        if not self.db_ok:
            return False, "postgres unreachable"
        if not self.vapi_ok:
            return False, "vapi not observed yet or unreachable"
        return True, f"ready ({self.replica_id})"

    def vapi_answered(self) -> None:
        self.vapi_ok = True
        self.alerter.condition("vapi_key_rejected", present=False)

    def outcome(self, outcome: OrgOutcome) -> None:
        """Controller-wide conditions seen through one organization's outcome."""
        if outcome.reason == "vapi_key_rejected":
            self.alerter.condition("vapi_key_rejected", present=True)
        elif outcome.reason == "rate_limited":
            self.alerter.condition("rate_limit_saturated", present=True)
        elif outcome.writes:
            self.alerter.condition("vapi_key_rejected", present=False)
            self.alerter.condition("rate_limit_saturated", present=False)

    def failure(self, exc: Exception) -> None:
        """Vapi or Postgres failed: not ready, and the matching condition is present."""
        if isinstance(exc, VapiError):
            self.vapi_ok = False
            self.alerter.condition("vapi_key_rejected", present=isinstance(exc, UnauthorizedError))
            if isinstance(exc, RateLimitedError):
                self.alerter.condition("rate_limit_saturated", present=True)
        else:
            self.db_ok = False
            self.alerter.condition("postgres_unreachable", present=True)
        logger.warning(
            "{} unavailable: {}",
            "Vapi" if isinstance(exc, VapiError) else "Postgres",
            redact(str(getattr(exc, "orig", exc) or type(exc).__name__))[:500],
        )
