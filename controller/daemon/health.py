"""What the daemon knows of its own health.

Liveness comes from progress, not from a timer that any turning loop resets: the claim loop
must turn, must claim when work is due and it has room, and no reconcile may run past
``stall_seconds``. Readiness names the real reason it is not ready: a set-up problem (the
schema's revision, or platform tables that hide part of the desired state, with the SQL that
fixes them) before an outage. Failures also drive the controller-wide alert conditions.

Must not do I/O: the supervisor and the guard report here; this only keeps the verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from loguru import logger

from controller.alerting.alerter import Alerter
from controller.core.outcome import OrgOutcome
from controller.preflight import HiddenStateError, SetupError
from controller.secret import redact
from controller.vapi.errors import RateLimitedError, UnauthorizedError, VapiError
from desired_state.shape import PlatformShapeError

DESIRED_STATE_NOT_VISIBLE = "desired_state_not_visible"
"""The controller-wide condition while the platform's tables hide part of the desired state."""


class Health:
    def __init__(
        self,
        alerter: Alerter,
        replica_id: str,
        *,
        stall_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.alerter = alerter
        self.replica_id = replica_id
        self.stall_seconds = stall_seconds
        self._clock = clock
        self.db_ok = False
        self.vapi_ok = False
        self.key_rejected = False
        self.schema_problem: str | None = None
        self.shape_problem: str | None = None
        """The platform's tables hide part of the desired state: what, and the fix SQL."""
        self._turned = clock()
        self._starved_since: float | None = None
        self._running: dict[object, float] = {}
        self._last_warning = ""

    # -- liveness ------------------------------------------------------------------------
    def turned(self) -> None:
        """The claim loop went round once."""
        self._turned = self._clock()

    def claimed(self, *, got: int, due: bool) -> None:
        """A claim found ``got`` rows while work was (or was not) ``due``."""
        if got or not due:
            self._starved_since = None
        elif self._starved_since is None:
            self._starved_since = self._clock()

    def started(self, work: object) -> None:
        self._running[work] = self._clock()

    def finished(self, work: object) -> None:
        self._running.pop(work, None)

    def liveness(self) -> tuple[bool, str]:
        now, stall = self._clock(), self.stall_seconds
        if now - self._turned > stall:
            return False, f"the claim loop has not turned for {now - self._turned:.0f}s"
        if self._starved_since is not None and self.db_ok and now - self._starved_since > stall:
            return (
                False,
                f"work is due but nothing was claimed for {now - self._starved_since:.0f}s",
            )
        oldest = min(self._running.values(), default=now)
        if now - oldest > stall:
            return False, f"a reconcile has been running for {now - oldest:.0f}s"
        return True, "alive"

    # -- readiness -----------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        problem = self.schema_problem or self.shape_problem
        if problem:
            return False, problem
        if not self.db_ok:
            return False, "postgres unreachable"
        if self.key_rejected:
            return False, "vapi key rejected: check VAPI_PRIVATE_KEY"
        if not self.vapi_ok:
            return False, "vapi not observed yet or unreachable"
        return True, f"ready ({self.replica_id})"

    @property
    def set_up_wrong(self) -> bool:
        return bool(self.schema_problem or self.shape_problem)

    def set_up(self, problem: SetupError | None) -> None:
        """The set-up check's verdict (``preflight.setup_problem``); None: all is in place.
        A partial view of the desired state raises ``desired_state_not_visible``."""
        hidden = isinstance(problem, HiddenStateError)
        self.schema_problem = None if problem is None or hidden else str(problem)
        self.shape_problem = str(problem) if hidden else None
        self.alerter.condition(DESIRED_STATE_NOT_VISIBLE, present=hidden)
        if problem is None:
            return
        self.db_ok = True  # it answered the check
        self._report("ERROR", f"not ready: {problem}")

    def vapi_answered(self) -> None:
        self.vapi_ok = True
        self.key_rejected = False
        self.alerter.condition("vapi_key_rejected", present=False)

    def outcome(self, outcome: OrgOutcome) -> None:
        """Controller-wide conditions seen through one organization's outcome."""
        if outcome.reason == "vapi_key_rejected":
            self.key_rejected = True
            self.alerter.condition("vapi_key_rejected", present=True)
        elif outcome.reason == "rate_limited":
            self.alerter.condition("rate_limit_saturated", present=True)
        elif outcome.writes:
            self.vapi_answered()
            self.alerter.condition("rate_limit_saturated", present=False)

    def failure(self, exc: Exception) -> None:
        """Vapi or Postgres failed, or the set-up is wrong (``SetupError``; a reconcile's
        ``PlatformShapeError``): not ready, and the matching condition is present."""
        if isinstance(exc, PlatformShapeError):
            self.set_up(HiddenStateError(exc.shape))
            return
        if isinstance(exc, SetupError):
            self.set_up(exc)
            return
        if isinstance(exc, VapiError):
            self.vapi_ok = False
            self.key_rejected = isinstance(exc, UnauthorizedError)
            self.alerter.condition("vapi_key_rejected", present=self.key_rejected)
            if isinstance(exc, RateLimitedError):
                self.alerter.condition("rate_limit_saturated", present=True)
            what = (
                "Vapi rejected the master key (check VAPI_PRIVATE_KEY)"
                if self.key_rejected
                else f"Vapi unavailable: {exc}"
            )
        else:
            self.db_ok = False
            self.alerter.condition("postgres_unreachable", present=True)
            what = f"Postgres unavailable: {getattr(exc, 'orig', exc) or type(exc).__name__}"
        self._report("WARNING", what)

    def _report(self, level: str, what: str) -> None:
        """Logged when the reason changes, not on every retry."""
        what = redact(what)[:2000]
        if what != self._last_warning:
            self._last_warning = what
            logger.log(level, what)

    def recovered(self) -> None:
        """Postgres answered again."""
        self.db_ok = True
        self._last_warning = ""
