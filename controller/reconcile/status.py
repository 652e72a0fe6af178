"""Write an organization's outcome to Postgres: its status row and its ``org_tools`` links."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from controller.core.desired import DesiredOrg, DesiredTool
from controller.core.outcome import OrgOutcome
from controller.secret import redact
from desired_state import records
from desired_state.records import ToolLink

MESSAGE_MAX = 4000


async def record_org_outcome(
    conn: AsyncConnection,
    outcome: OrgOutcome,
    *,
    desired: DesiredOrg | None,
    tools: Sequence[DesiredTool],
    tool_ids: Mapping[str, str],
) -> None:
    """Status row and ``org_tools``, in the caller's transaction."""
    if not outcome.desired and outcome.converged and outcome.orphans == 0:
        await records.forget_status(conn, org_id=outcome.org_id)
        await records.replace_org_tools(conn, org_id=outcome.org_id, links={})
        return
    await records.write_status(
        conn,
        org_id=outcome.org_id,
        state=outcome.state,
        message=redact(outcome.message)[:MESSAGE_MAX],
        reason=outcome.reason,
        failed=outcome.failed,
    )
    if outcome.state == "synced" and desired is not None:
        await records.replace_org_tools(
            conn, org_id=outcome.org_id, links=linked_tools(desired, tools, tool_ids)
        )


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
