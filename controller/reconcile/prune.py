"""The prune limit: how many deletions the controller may make, behind one interface.

A full pass (``reconcile``, ``plan``) judges all of its planned deletions at once: over the
bound, none happens (an empty or wrong desired snapshot must not wipe Vapi). The daemon has
no passes: deletions within a sliding window (the resync interval), by every replica (the
audit log is shared), count against the same bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core.observed import ObservedState
from controller.core.plan import PruneDecision, guard_prune
from controller.core.settings import PruneBounds


class PruneLimit(Protocol):
    async def decide(self, planned: int) -> PruneDecision:
        """May ``planned`` more deletions (assistants or tools) happen now?"""
        ...


@dataclass(frozen=True)
class PassPruneLimit:
    """The decision of a whole pass, made once over every deletion it planned."""

    decision: PruneDecision

    @classmethod
    def judged(
        cls, *, planned: int, observed: ObservedState, bounds: PruneBounds
    ) -> PassPruneLimit:
        return cls(
            guard_prune(
                planned_deletes=planned, managed_total=observed.managed_count(), bounds=bounds
            )
        )

    async def decide(self, planned: int) -> PruneDecision:
        return self.decision if planned else PruneDecision(True, 0)


@dataclass(frozen=True)
class WindowPruneLimit:
    """Deletions within the last ``window_seconds`` (every replica's) plus those planned."""

    engine: AsyncEngine
    observed: ObservedState
    bounds: PruneBounds
    window_seconds: float

    async def decide(self, planned: int) -> PruneDecision:
        if not planned:
            return PruneDecision(True, 0)
        async with self.engine.connect() as conn:
            recent = await conn.execute(
                text(
                    "select count(*) from reconciler.audit_log where outcome = 'ok' "
                    "and action in ('DeleteAssistant', 'DeleteTool') "
                    "and at > now() - make_interval(secs => :window)"
                ),
                {"window": self.window_seconds},
            )
            done = int(recent.scalar_one())
        return guard_prune(
            planned_deletes=planned + done,
            managed_total=self.observed.managed_count() + done,
            bounds=self.bounds,
            per=f"per {self.window_seconds:g}s",
        )
