"""Write an organization's outcome to Postgres: its status row and its ``org_tools`` links."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from controller.core.desired import ToolRow
from controller.core.outcome import OrgOutcome
from controller.secret import redact
from desired_state import records
from desired_state.direct import DirectConnection
from desired_state.records import Fence, ToolLink, WriteRecord
from desired_state.shape import PlatformShape

MESSAGE_MAX = 4000


@dataclass(frozen=True)
class Recorded:
    """An organization's outcome, the ``org_tools`` rows it should hold (None: leave
    them; see ``controller.core.outcome.links_to_record``), and the records of the Vapi
    writes its visit made (``controller.reconcile.apply.Applier.deferred``), each under the
    claim's ``fence``."""

    outcome: OrgOutcome
    links: frozenset[ToolRow] | None = None
    writes: tuple[WriteRecord, ...] = ()
    fence: Fence | None = None

    @property
    def forgotten(self) -> bool:
        """Nothing desired, nothing left in Vapi: the organization has no status at all."""
        return not self.outcome.desired and self.outcome.converged and self.outcome.orphans == 0


async def record_writes(conn: DirectConnection, recorded: Sequence[Recorded]) -> None:
    """The writes' records of many organizations (``records.record_writes``: links and
    registry each under its fence, audit rows whatever the fence). Before the claims'
    completion, in the same transaction: a completion releases the work row, and a fence
    holds only while the row is leased."""
    await records.record_writes(conn, [(w, r.fence) for r in recorded for w in r.writes])


async def record_outcomes(
    conn: DirectConnection,
    recorded: Sequence[Recorded],
    *,
    shape: PlatformShape,
    one_shot: bool = False,
) -> None:
    """Status rows and ``org_tools`` of many organizations, in the caller's transaction, in a
    handful of statements whatever their number. ``shape``: the platform's, usable
    (``desired_state.shape.engine_shape``), for ``org_tools``. ``one_shot``: a one-shot
    command's, which never overwrites the daemon's view with its own config's pause state."""
    gone = [r.outcome.org_id for r in recorded if r.forgotten]
    kept = [r for r in recorded if not r.forgotten]
    await records.forget_statuses(conn, gone)
    await records.write_statuses(
        conn,
        [
            records.StatusRow(
                org_id=r.outcome.org_id,
                state=r.outcome.state,
                message=redact(r.outcome.message)[:MESSAGE_MAX],
                reason=r.outcome.reason,
                failed=r.outcome.failed,
            )
            for r in kept
        ],
        one_shot=one_shot,
    )
    links: dict[UUID, Mapping[str, ToolLink]] = {org_id: {} for org_id in gone}
    links.update(
        {
            r.outcome.org_id: {name: ToolLink(name, vid, digest) for name, vid, digest in r.links}
            for r in kept
            if r.links is not None
        }
    )
    await records.replace_org_tools(conn, links, shape=shape)
