"""Write an organization's outcome to Postgres: its status row and its ``org_tools`` links."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from controller.core.desired import DesiredOrg, DesiredState, DesiredTool
from controller.core.outcome import OrgOutcome
from controller.secret import redact
from desired_state import records
from desired_state.records import ToolLink

MESSAGE_MAX = 4000


@dataclass(frozen=True)
class Recorded:
    """An organization's outcome and the ``org_tools`` it should hold (None: leave them)."""

    outcome: OrgOutcome
    links: Mapping[str, ToolLink] | None

    @classmethod
    def judged(
        cls,
        outcome: OrgOutcome,
        desired: DesiredState,
        tool_ids: Mapping[str, str] | None = None,
    ) -> Recorded:
        """``org_tools`` are rewritten only for a synced organization, and only when they
        differ from what the snapshot read (``tool_ids``: newer than the snapshot's)."""
        org = desired.orgs.get(outcome.org_id)
        if outcome.state != "synced" or org is None:
            return cls(outcome, None)
        links = linked_tools(org, desired.tools, desired.tool_ids if tool_ids is None else tool_ids)
        rows = {
            (link.tool_name, link.vapi_tool_id, link.definition_hash) for link in links.values()
        }
        if rows == desired.org_tools.get(outcome.org_id, frozenset()):
            return cls(outcome, None)
        return cls(outcome, links)

    @property
    def forgotten(self) -> bool:
        """Nothing desired, nothing left in Vapi: the organization has no status at all."""
        return not self.outcome.desired and self.outcome.converged and self.outcome.orphans == 0


async def record_outcomes(conn: AsyncConnection, recorded: Sequence[Recorded]) -> None:
    """Status rows and ``org_tools`` of many organizations, in the caller's transaction, in a
    handful of statements whatever their number."""
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
    )
    links: dict[UUID, Mapping[str, ToolLink]] = {org_id: {} for org_id in gone}
    links.update({r.outcome.org_id: r.links for r in kept if r.links is not None})
    await records.replace_org_tools(conn, links)


def linked_tools(
    desired: DesiredOrg, tools: Sequence[DesiredTool], tool_ids: Mapping[str, str]
) -> dict[str, ToolLink]:
    """The tools linked into at least one of the organization's assistants."""
    roles = {agent.role for agent in desired.agents}
    return {
        tool.name: ToolLink(tool.name, tool_ids[tool.name], tool.definition_hash)
        for tool in tools
        if tool.enabled and tool.name in tool_ids and roles & set(tool.roles)
    }
