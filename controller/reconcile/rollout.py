"""The mass-update guard: a configuration-caused rollout is limited like deletions are.

When updates caused only by the render settings (a profile, a default, ``BACKEND_URL``)
would reach more than ``[controller] max_update_percent`` of the managed assistants within
an hour, a canary (``canary_percent``, at least one) goes out and the rest is held: the
organizations are ``blocked`` (reason ``mass_update_guard``, which alerts) and ``plan`` shows
the held updates, until the operator raises the limit or sets ``confirm_rollout`` to the
digest the message names. Updates caused by the platform's own row changes are never held.
Shared by every replica: the counts are read from Postgres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import Settings
from controller.core.observed import ObservedState

WINDOW_SECONDS = 3600


@dataclass(frozen=True)
class Admission:
    admitted: int
    reason: str = ""
    """Why the rest is held (empty when everything is admitted)."""


@dataclass(frozen=True)
class RolloutGuard:
    engine: AsyncEngine
    observed: ObservedState
    settings: Settings

    async def admit(self, planned: int, *, admitted_here: int = 0) -> Admission:
        """How many of ``planned`` configuration-caused updates may go out now.
        ``admitted_here``: this process's admissions under the same settings, which may not
        have reached the audit log yet (concurrent reconciles share one canary)."""
        controller = self.settings.controller
        digest = self.settings.render_digest
        managed = self.observed.managed_count()
        if not planned or not managed or controller.confirm_rollout == digest:
            return Admission(planned)
        async with self.engine.connect() as conn:
            counts = await conn.execute(
                text("""
                    select
                      (select count(*) from reconciler.vapi_objects
                        where kind = 'assistant' and state = 'present'
                          and settings_hash is not null and settings_hash <> :digest) as pending,
                      (select count(*) from reconciler.audit_log
                        where cause = 'config' and outcome = 'ok'
                          and at > now() - make_interval(secs => :window)) as done
                """),
                {"digest": digest, "window": WINDOW_SECONDS},
            )
            pending, audited = counts.one()
        done = max(audited, admitted_here)
        if (pending + done) * 100 <= controller.max_update_percent * managed:
            return Admission(planned)
        canary = max(1, math.ceil(managed * controller.canary_percent / 100))
        return Admission(
            min(planned, max(canary - done, 0)),
            f"mass-update guard: a configuration change would update {pending + done} of "
            f"{managed} managed assistants within an hour (the limit is "
            f"{controller.max_update_percent:g}%); {done} sent as a canary, the rest held. "
            f'To go on: set [controller] confirm_rollout = "{digest}" or raise '
            "max_update_percent",
        )
