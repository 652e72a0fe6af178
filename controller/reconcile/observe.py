"""Observe Vapi: complete listings of assistants and tools. Observing never writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from controller.core.desired import DesiredOrg
from controller.core.observed import ObservedAssistant, ObservedTool
from controller.vapi.client import VapiClient


@dataclass(frozen=True)
class ObservedState:
    assistants: tuple[ObservedAssistant, ...] = ()
    tools: tuple[ObservedTool, ...] = ()
    _by_org: dict[UUID, list[ObservedAssistant]] = field(default_factory=dict, repr=False)
    _by_id: dict[str, ObservedAssistant] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for assistant in self.assistants:
            self._by_id[assistant.id] = assistant
            if assistant.org_tag is not None:
                self._by_org.setdefault(assistant.org_tag, []).append(assistant)

    def assistant(self, vapi_id: str) -> ObservedAssistant | None:
        return self._by_id.get(vapi_id)

    def tagged_org_ids(self) -> set[UUID]:
        return {org for org, found in self._by_org.items() if any(a.is_managed for a in found)}

    def managed_count(self) -> int:
        return sum(1 for a in self.assistants if a.is_managed)

    def for_org(self, org_id: UUID, desired: DesiredOrg | None) -> Sequence[ObservedAssistant]:
        """Assistants tagged for the organization, plus those its agents name by id."""
        found = {a.id: a for a in self._by_org.get(org_id, ())}
        for agent in desired.agents if desired else ():
            named = self._by_id.get(agent.vapi_assistant_id or "")
            if named is not None:
                found.setdefault(named.id, named)
        return list(found.values())


async def observe(client: VapiClient) -> ObservedState:
    assistants, tools = await asyncio.gather(client.list_all("assistant"), client.list_all("tool"))
    return ObservedState(
        assistants=tuple(ObservedAssistant(body) for body in assistants),
        tools=tuple(ObservedTool(body) for body in tools),
    )


def org_ids_to_visit(
    desired: Iterable[UUID], observed: ObservedState, known: Iterable[UUID]
) -> list[UUID]:
    """Desired organizations, plus any with assistants or status rows left to settle."""
    return sorted(set(desired) | observed.tagged_org_ids() | set(known), key=str)
