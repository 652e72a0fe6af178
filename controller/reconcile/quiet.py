"""Organizations a visit finds as the last one left them: nothing to plan, nothing to write.

A resync visits every organization each interval, and nearly all of them are as their last
visit found them. For each organization whose last visit needed no action, ``QuietMemo`` keeps
what that plan was made from (``PlanInputs``) and its outcome. A visit whose inputs are all
the same is answered from the memo: no confirm, no plan, no task of its own in the daemon (the
claim loop settles a batch's unchanged organizations in one group commit).

The inputs are compared as ``plan_org`` reads them: the organization's desired rows (by
value: every load makes new rows), the observed assistants, unusable objects and phone
numbers it was planned against (by identity first: the cache makes a new object whenever
Vapi's copy changes, and an equal body is the same input), the baselines of its assistants,
the context every organization of a batch shares (``SharedContext``: kept as the same object
while it is equal) and the settings in force (the same object until a reload, then by value).

Never answered from the memo: an organization no longer desired, one with a create in doubt
(an intent with no known outcome), one whose last visit wrote, failed, was blocked, held an
update or left an orphan (whether a number routing to it may be released is Postgres' answer,
not the cache's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from uuid import UUID

from controller.config import Settings
from controller.core.actions import OrgPlan
from controller.core.desired import Baseline, DesiredAgent, DesiredOrg, DesiredState
from controller.core.observed import ObservedAssistant, ObservedPhoneNumber, Unusable
from controller.core.outcome import OrgOutcome
from controller.core.plan import AssistantContext, InSync

SharedContext = tuple[object, ...]
"""What ``AssistantContext`` holds for every organization alike (all of it but baselines)."""


def shared_part(context: AssistantContext) -> SharedContext:
    return (
        context.tool_ids_by_role,
        context.defaults,
        context.backend_url,
        context.contested_ids,
        context.contested_numbers,
        context.settings_hash,
        context.owned_tool_ids,
        context.existing_tool_ids,
    )


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """Everything one organization's plan is made from (see the module's docstring)."""

    rows: object
    """What the organization was read from (``DesiredState.rows_of``): equal rows make an
    equal ``org``, which is not compared again."""
    org: DesiredOrg | None = field(compare=False)
    observed: tuple[ObservedAssistant, ...]
    unusable: tuple[Unusable, ...]
    numbers: tuple[ObservedPhoneNumber, ...] | None
    """None: the platform has no phone numbers to route."""
    baselines: tuple[Baseline | None, ...]
    """Of each of ``observed``."""
    shared: SharedContext
    """The batch's context but its baselines (those of ``observed`` are ``baselines``)."""
    settings: Settings

    @property
    def numbers_by_id(self) -> Mapping[str, ObservedPhoneNumber] | None:
        return None if self.numbers is None else {n.id: n for n in self.numbers}


@dataclass(frozen=True, slots=True)
class Quiet:
    inputs: PlanInputs
    outcome: OrgOutcome


class QuietMemo:
    """Organization -> the inputs and outcome of its last visit, when that needed nothing."""

    def __init__(self) -> None:
        self._memo: dict[UUID, Quiet] = {}

    def __contains__(self, org_id: UUID) -> bool:
        return org_id in self._memo

    def forget(self, org_id: UUID) -> None:
        self._memo.pop(org_id, None)

    def remember(
        self,
        inputs: PlanInputs,
        plan: OrgPlan,
        outcome: OrgOutcome,
        in_sync: Mapping[UUID, InSync] | None,
    ) -> None:
        """Keep the verdict of a visit that planned nothing and wrote nothing. ``in_sync``:
        the plan's verdicts on its agents (``plan_org``'s memo), whose agents hold the
        observed bodies' own strings: the memo keeps those, not a second copy of every
        prompt (at 20,000 assistants, the copies were about 10 MB)."""
        nothing = not (
            plan.actions or plan.held or plan.invalid or plan.blocked or plan.error or plan.orphans
        )
        if nothing and outcome.converged and not outcome.writes:
            slim = _sharing_strings(inputs, in_sync or {})
            if slim is not None:
                self._memo[plan.org_id] = Quiet(slim, outcome)

    def recall(self, org_id: UUID, desired: DesiredState) -> Quiet | None:
        """The memo of an organization read from the same rows as then and with no create in
        doubt, before the rest of its inputs are compared (``Quiet.inputs``)."""
        quiet = self._memo.get(org_id)
        if quiet is None or desired.rows_of(org_id) != quiet.inputs.rows:
            return None
        org = quiet.inputs.org  # the same rows: the same agents
        if org is None or _in_doubt(org.agents, desired.intents):
            return None
        return quiet


def _sharing_strings(inputs: PlanInputs, in_sync: Mapping[UUID, InSync]) -> PlanInputs | None:
    """``inputs`` with the verdicts' agents, and rows whose strings are theirs (None: an
    agent without a verdict, which a plan of nothing never leaves)."""
    org = inputs.org
    if org is None or any(a.agent_id not in in_sync for a in org.agents):
        return None
    agents = tuple(in_sync[a.agent_id].agent for a in org.agents)
    strings = {v: v for a in agents for v in (a.name, a.system_prompt, a.first_message) if v}
    rows = inputs.rows
    if isinstance(rows, tuple):
        rows = tuple(tuple(strings.get(v, v) if type(v) is str else v for v in row) for row in rows)
    return replace(inputs, rows=rows, org=DesiredOrg(org.org_id, agents))


def _in_doubt(agents: Sequence[DesiredAgent], intents: Mapping[UUID, object]) -> bool:
    return bool(intents) and any(a.agent_id in intents for a in agents)
