"""Plan: desired + observed -> ordered actions. Pure: no I/O.

The core's one entry point for decisions. Tools are planned once for the whole account
(``plan_tools``); assistants per organization (``plan_org``, with the ``AssistantContext``
that ``assistant_context`` derives from a snapshot); deletions are bounded (``guard_prune``).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from uuid import UUID

from controller.core.actions import (
    AdoptTool,
    AssistantAction,
    BindPhoneNumber,
    Cause,
    CreateAssistant,
    CreateTool,
    DeleteAssistant,
    DeleteTool,
    LinkAssistant,
    OrgPlan,
    ReleasePhoneNumber,
    ToolAction,
    ToolPlan,
    UpdateAssistant,
    UpdateTool,
)
from controller.core.desired import (
    Baseline,
    DesiredAgent,
    DesiredOrg,
    DesiredState,
    DesiredTool,
    fingerprint,
    row_hash,
)
from controller.core.drift import FieldChange, drift
from controller.core.observed import (
    MANAGED_BY,
    ObservedAssistant,
    ObservedPhoneNumber,
    ObservedState,
    ObservedTool,
    Unusable,
)
from controller.core.ownership import ToolOwnership, compose, owned_view
from controller.core.render import (
    ROLES,
    InvalidAgentError,
    InvalidToolError,
    render_assistant,
    render_tool,
)
from controller.core.settings import PruneBounds, RenderDefaults

PENDING_TOOL_ID = "(new:{name})"
"""What ``plan`` shows in ``model.toolIds`` for a tool that is not created yet."""


def plan_tools(
    *,
    tools: Sequence[DesiredTool],
    observed: Sequence[ObservedTool],
    registry: Mapping[str, str],
    baselines: Mapping[str, Baseline],
    backend_url: str,
    prune: bool,
) -> ToolPlan:
    by_id = {t.id: t for t in observed}
    ours = sorted((t for t in observed if t.is_ours(backend_url)), key=lambda t: t.created_at)
    actions: list[ToolAction] = []
    invalid: dict[str, str] = {}
    claimed: set[str] = set()
    for tool in tools:
        registered = registry.get(tool.name)
        if registered:
            claimed.add(registered)
        if not tool.enabled:
            continue
        try:
            body = render_tool(tool, backend_url=backend_url)
        except InvalidToolError as exc:
            invalid[tool.name] = str(exc)
            continue
        current = by_id.get(registered) if registered else None
        cause: Cause = "desired"
        if current is None:
            current = next((t for t in ours if t.function_name == tool.name), None)
            if current is None:
                actions.append(CreateTool(tool.name, body, tool.definition_hash))
                continue
            claimed.add(current.id)
            actions.append(AdoptTool(tool.name, current.id, tool.definition_hash))
            cause = "adopt"
        changes = drift(body, current.body, baselines.get(current.id))
        if changes:
            actions.append(
                UpdateTool(
                    tool.name,
                    current.id,
                    body,
                    tool.definition_hash,
                    tuple(changes),
                    cause if cause == "adopt" else _cause(body, baselines.get(current.id)),
                    current.body,
                )
            )
    wanted = {t.name for t in tools if t.enabled}
    orphans = tuple(t.id for t in ours if t.id not in claimed or t.function_name not in wanted)
    if prune:
        names = {t.id: t.function_name or "?" for t in ours}
        actions.extend(DeleteTool(names[i], i, "no enabled definition wants it") for i in orphans)
    return ToolPlan(tuple(actions), invalid, orphans)


@dataclass(frozen=True)
class AssistantContext:
    """What every assistant of a pass is rendered with."""

    tool_ids_by_role: Mapping[str, Sequence[str]]
    baselines: Mapping[str, Baseline]
    defaults: RenderDefaults
    backend_url: str
    contested_ids: frozenset[str] = frozenset()
    """Assistant ids named by agents of more than one organization."""
    contested_numbers: frozenset[str] = frozenset()
    """Phone numbers named by inbound agents of more than one organization."""
    settings_hash: str | None = None
    """Fingerprint of the render settings in force (profile values, ``BACKEND_URL``)."""
    owned_tool_ids: frozenset[str] = frozenset()
    """Every tool id the controller registers or adopts: the only ids of ``model.toolIds``
    it owns (``controller.core.ownership``), with those ``tool_ids_by_role`` links."""

    existing_tool_ids: frozenset[str] | None = None
    """Every tool id Vapi holds (None: not known): an id naming none is a dangling link."""

    @cached_property  # every assistant of a pass is planned with it
    def owned(self) -> ToolOwnership:
        linked = (i for ids in self.tool_ids_by_role.values() for i in ids)
        return ToolOwnership(self.owned_tool_ids.union(linked), self.existing_tool_ids)


def assistant_context(
    desired: DesiredState,
    observed: ObservedState,
    *,
    defaults: RenderDefaults,
    backend_url: str,
    tool_ids: Mapping[str, str] | None = None,
    invalid_tools: Mapping[str, str] | None = None,
    settings_hash: str | None = None,
) -> AssistantContext:
    """What every assistant is rendered with: the tool ids each role links (``tool_ids``
    overrides the registry's, e.g. with tools a plan will create), baselines, defaults."""
    ids = desired.tool_ids if tool_ids is None else tool_ids
    skip = invalid_tools or {}
    return AssistantContext(
        tool_ids_by_role={
            role: [
                ids[t.name]
                for t in desired.tools
                if t.enabled and role in t.roles and t.name in ids and t.name not in skip
            ]
            for role in ROLES
        },
        baselines=desired.baselines,
        defaults=defaults,
        backend_url=backend_url,
        contested_ids=contested_untagged(desired, observed),
        contested_numbers=desired.contested_numbers,
        owned_tool_ids=frozenset(ids.values()),
        existing_tool_ids=observed.tool_ids(),
        settings_hash=settings_hash,
    )


def contested_untagged(desired: DesiredState, observed: ObservedState) -> frozenset[str]:
    """Untagged assistants named by several organizations: none may adopt them. A tagged one
    has an owner; the others are blocked by the tag alone, and the owner keeps converging."""
    return frozenset(
        vid
        for vid in desired.shared_assistant_ids
        if (found := observed.assistant(vid)) is not None and not found.has_org_tag
    )


def planned_tool_ids(registry: Mapping[str, str], tools: ToolPlan) -> dict[str, str]:
    """The registry as it will be once ``tools`` is applied, a placeholder for each create."""
    ids = dict(registry)
    for action in tools.actions:
        if isinstance(action, AdoptTool):
            ids[action.tool_name] = action.vapi_id
        elif isinstance(action, CreateTool):
            ids[action.tool_name] = PENDING_TOOL_ID.format(name=action.tool_name)
    return ids


@dataclass(frozen=True)
class InSync:
    """An agent found in sync with its assistant (no action), and everything that verdict
    was drawn from: while all of it is the same, so is the verdict (the plan is a pure
    function of it), and rendering and comparing again can be skipped."""

    agent: DesiredAgent
    current: ObservedAssistant
    """Compared by identity: the cache makes a new object for every new version."""
    tool_ids: Sequence[str]
    baseline: Baseline | None
    tool_ids_by_role: Mapping[str, Sequence[str]]
    owned_tool_ids: frozenset[str]
    existing_tool_ids: frozenset[str] | None
    defaults: RenderDefaults
    backend_url: str

    @classmethod
    def of(
        cls,
        agent: DesiredAgent,
        current: ObservedAssistant,
        tool_ids: Sequence[str],
        context: AssistantContext,
    ) -> InSync:
        """The verdict for ``agent``; its strings equal to the observed body's are swapped
        for the body's own objects (the cache holds them anyway: a memo costs no second
        copy of every prompt). Swapped in place: equal strings are the same value, and a
        copy of the agent was a sixth of the CPU of planning an organization in sync (the
        first resync pass after a start plans every one)."""
        model = current.body.get("model")
        messages = model.get("messages") if isinstance(model, Mapping) else None
        prompt = messages[0].get("content") if isinstance(messages, list) and messages else None
        shared: dict[str, Any] = {
            name: found
            for name, found in (
                ("system_prompt", prompt),
                ("first_message", current.body.get("firstMessage")),
                ("name", current.body.get("name")),
            )
            if type(found) is str and found == getattr(agent, name)
        }
        for name, found in shared.items():
            object.__setattr__(agent, name, found)
        return cls(
            agent,
            current,
            tuple(tool_ids),
            context.baselines.get(current.id),
            context.tool_ids_by_role,
            context.owned_tool_ids,
            context.existing_tool_ids,
            context.defaults,
            context.backend_url,
        )

    def holds(
        self,
        agent: DesiredAgent,
        current: ObservedAssistant,
        tool_ids: Sequence[str],
        context: AssistantContext,
    ) -> bool:
        """Whether the verdict still stands: every input the same."""
        return (
            self.current is current
            and self.agent == agent
            and tuple(tool_ids) == self.tool_ids
            and context.baselines.get(current.id) == self.baseline
            and _same(self.tool_ids_by_role, context.tool_ids_by_role)
            and _same(self.owned_tool_ids, context.owned_tool_ids)
            and _same(self.existing_tool_ids, context.existing_tool_ids)
            and _same(self.defaults, context.defaults)
            and self.backend_url == context.backend_url
        )


def _same(a: object, b: object) -> bool:
    return a is b or a == b


InSyncMemo = MutableMapping[UUID, Mapping[UUID, InSync]]
"""Organization -> agent -> its last in-sync verdict (``plan_org``'s ``memo``), kept by the
caller across visits."""


def plan_org(
    *,
    org_id: UUID,
    desired: DesiredOrg | None,
    observed: Sequence[ObservedAssistant],
    context: AssistantContext,
    prune: bool,
    unusable: Sequence[Unusable] = (),
    numbers: Mapping[str, ObservedPhoneNumber] | None = None,
    releasable: frozenset[str] = frozenset(),
    memo: InSyncMemo | None = None,
) -> OrgPlan:
    """Actions converging one organization. ``observed`` holds every assistant tagged for it
    and every assistant its agents' ``vapi_assistant_id`` name; ``unusable`` those of them
    Vapi returned in a shape the controller cannot read. ``desired`` is None when the
    organization is no longer wanted (suspended or deleted): all of its assistants are orphans.
    ``numbers``: the phone numbers its inbound agents name and those routing to its
    assistants (None: the platform has no ``vapi_phone_number_id``, no phone work at all);
    ``releasable``: those of them no desired inbound agent names. ``memo``: verdicts of
    earlier plans (``InSync``), read and updated: an agent whose inputs are all the same as
    when it was last found in sync is not rendered and compared again.
    """
    agents = desired.agents if desired else ()
    known = memo.pop(org_id, {}) if memo is not None else {}
    verdicts: dict[UUID, InSync] = {}
    by_id = {a.id: a for a in observed}
    blocked = _ownership_conflict(org_id, agents, by_id, context.contested_ids)
    blocked = blocked or _contested_number(agents, context.contested_numbers)
    if blocked:
        return OrgPlan(org_id, blocked=blocked)
    actions: list[AssistantAction] = []
    invalid: dict[UUID, str] = {}
    claimed: set[str] = set()
    routes: dict[UUID, str | None] = {}
    """Agent -> the assistant its number must route to (None: the one created here)."""
    for agent in agents:
        current = _find_assistant(org_id, agent, observed, by_id)
        if current is not None:
            claimed.add(current.id)
        spoiled = _unusable_of(agent, unusable) if current is None else None
        if spoiled is not None:
            invalid[agent.agent_id] = (
                f"assistant {spoiled.vapi_id} as Vapi returns it is unusable "
                f"({spoiled.problem}); fix or delete it in Vapi"
            )
            continue
        tool_ids = context.tool_ids_by_role.get(agent.role, ())
        verdict = known.get(agent.agent_id)
        if (
            current is not None
            and verdict is not None
            and verdict.holds(agent, current, tool_ids, context)
        ):
            verdicts[agent.agent_id] = verdict
            routes[agent.agent_id] = current.id
            continue
        try:
            body = render_assistant(
                agent,
                tool_ids=tool_ids,
                defaults=context.defaults,
                backend_url=context.backend_url,
                observed_metadata=current.metadata if current else None,
            )
        except InvalidAgentError as exc:
            invalid[agent.agent_id] = str(exc)
            continue
        converge = _converge_agent(org_id, agent, current, body, context)
        if current is not None and not converge and memo is not None:
            verdicts[agent.agent_id] = InSync.of(agent, current, tool_ids, context)
        actions.extend(converge)
        routes[agent.agent_id] = current.id if current else None
    if memo is not None and verdicts:
        memo[org_id] = verdicts
    if numbers is not None:
        actions.extend(_route_numbers(org_id, agents, routes, numbers, invalid))
    duplicates = _duplicates(org_id, agents, observed, claimed)
    orphans = tuple(
        a.id
        for a in sorted(observed, key=lambda a: a.created_at)
        if a.is_managed and a.org_tag == org_id and a.id not in claimed | set(duplicates)
    )
    actions.extend(
        DeleteAssistant(org_id, dup, f"a later duplicate of {kept}", duplicate_of=kept)
        for dup, kept in duplicates.items()
    )
    stranded = tuple(
        (number.id, number.assistant_id or "")
        for number in (numbers or {}).values()
        if number.assistant_id in orphans and number.id in releasable
    )
    if prune:
        actions.extend(ReleasePhoneNumber(org_id, n, a) for n, a in stranded)
        actions.extend(DeleteAssistant(org_id, i, "no active agent wants it") for i in orphans)
    return OrgPlan(
        org_id,
        tuple(actions),
        invalid,
        None,
        orphans,
        kept=tuple(sorted(claimed)),
        stranded_numbers=stranded,
    )


def _contested_number(agents: Sequence[DesiredAgent], contested: frozenset[str]) -> str | None:
    for agent in agents:
        if agent.role == "inbound" and agent.vapi_phone_number_id in contested:
            return (
                f"phone number {agent.vapi_phone_number_id} is named by inbound agents of "
                "several organizations: it is written for none of them"
            )
    return None


def _route_numbers(
    org_id: UUID,
    agents: Sequence[DesiredAgent],
    routes: Mapping[UUID, str | None],
    numbers: Mapping[str, ObservedPhoneNumber],
    invalid: dict[UUID, str],
) -> list[AssistantAction]:
    """Each inbound agent's number routed to its assistant. An outbound agent's number is
    caller id only and never bound."""
    actions: list[AssistantAction] = []
    for agent in agents:
        number_id = agent.vapi_phone_number_id
        if agent.role != "inbound" or not number_id or agent.agent_id not in routes:
            continue
        number = numbers.get(number_id)
        if number is None:
            invalid[agent.agent_id] = f"phone number {number_id} does not exist in Vapi"
            continue
        target = routes[agent.agent_id]
        if target is None or number.assistant_id != target:
            cause: Cause = "relink" if number.assistant_id else "desired"
            actions.append(
                BindPhoneNumber(
                    org_id, agent.agent_id, number_id, target, number.assistant_id, cause
                )
            )
    return actions


def _duplicates(
    org_id: UUID,
    agents: Sequence[DesiredAgent],
    observed: Sequence[ObservedAssistant],
    kept: set[str],
) -> dict[str, str]:
    """Duplicate id -> the id kept: a managed assistant tagged for the same organization and
    agent as the one Postgres links, and created after it (a late create by a replica whose
    lease had expired). Deleted whatever ``prune`` says: the controller undoes its own
    mistake, never anything older or anything Postgres names."""
    by_id = {a.id: a for a in observed}
    found: dict[str, str] = {}
    for agent in agents:
        linked = by_id.get(agent.vapi_assistant_id or "")
        if linked is None or linked.id not in kept:
            continue
        for other in observed:
            if (
                other.id != linked.id
                and other.is_managed
                and other.org_tag == org_id
                and other.agent_tag == agent.agent_id
                and other.created_at > linked.created_at
            ):
                found[other.id] = linked.id
    return found


def _ownership_conflict(
    org_id: UUID,
    agents: Sequence[DesiredAgent],
    by_id: Mapping[str, ObservedAssistant],
    contested_ids: frozenset[str],
) -> str | None:
    named: dict[str, UUID] = {}
    for agent in agents:
        vid = agent.vapi_assistant_id
        if not vid:
            continue
        if vid in contested_ids:
            return f"assistant {vid} is named by agents of several organizations"
        if vid in named:
            return f"agents {named[vid]} and {agent.agent_id} both name assistant {vid}"
        named[vid] = agent.agent_id
        current = by_id.get(vid)
        if current is None or not current.has_org_tag:
            continue
        if not current.is_managed:
            return (
                f"agent {agent.agent_id} names assistant {vid}, which carries an org_id tag "
                f"but is not managed by {MANAGED_BY}"
            )
        if current.org_tag != org_id:
            return (
                f"agent {agent.agent_id} names assistant {vid}, which is tagged for another "
                "organization"
            )
        if current.agent_tag not in (None, agent.agent_id):
            return (
                f"agent {agent.agent_id} names assistant {vid}, which is tagged for agent "
                f"{current.agent_tag}"
            )
    return None


def _unusable_of(agent: DesiredAgent, unusable: Sequence[Unusable]) -> Unusable | None:
    """An unusable assistant the agent names or that is tagged for it: never re-created."""
    return next(
        (
            u
            for u in unusable
            if u.vapi_id == agent.vapi_assistant_id or u.agent_tag == agent.agent_id
        ),
        None,
    )


def _find_assistant(
    org_id: UUID,
    agent: DesiredAgent,
    observed: Sequence[ObservedAssistant],
    by_id: Mapping[str, ObservedAssistant],
) -> ObservedAssistant | None:
    if agent.vapi_assistant_id and agent.vapi_assistant_id in by_id:
        return by_id[agent.vapi_assistant_id]
    tagged = sorted(
        (
            a
            for a in observed
            if a.is_managed and a.org_tag == org_id and a.agent_tag == agent.agent_id
        ),
        key=lambda a: a.created_at,
    )
    return tagged[0] if tagged else None


def _converge_agent(
    org_id: UUID,
    agent: DesiredAgent,
    current: ObservedAssistant | None,
    body: Mapping[str, Any],
    context: AssistantContext,
) -> list[AssistantAction]:
    if current is None:
        return [
            CreateAssistant(org_id, agent.agent_id, body, row_hash(agent), context.settings_hash)
        ]
    actions: list[AssistantAction] = []
    if agent.vapi_assistant_id != current.id:
        actions.append(LinkAssistant(org_id, agent.agent_id, current.id))
    legacy = not current.has_org_tag
    baseline = context.baselines.get(current.id)
    owned = context.owned
    changes = drift(body, owned_view(current.body, owned), None if legacy else baseline)
    if changes:  # the row's fingerprint only when there is something to write
        inputs = row_hash(agent), context.settings_hash
        cause: Cause = "adopt" if legacy else _cause(body, baseline, *inputs)
        actions.append(
            UpdateAssistant(
                org_id,
                agent.agent_id,
                current.id,
                _patch(body, changes, current.body, owned),
                body,
                tuple(changes),
                cause,
                current.body,
                owned,
                *inputs,
            )
        )
    return actions


def _patch(
    body: Mapping[str, Any],
    changes: Sequence[FieldChange],
    observed: Mapping[str, Any],
    owned_tool_ids: ToolOwnership,
) -> dict[str, Any]:
    """Each changed top-level key, sent whole (PATCH replaces whole subtrees), with what the
    controller does not own inside it kept as observed."""
    keys = {change.path.split(".", 1)[0] for change in changes}
    return {
        key: compose(key, body[key], observed.get(key), owned_tool_ids=owned_tool_ids)
        for key in body
        if key in keys
    }


def _cause(
    body: Mapping[str, Any],
    baseline: Baseline | None,
    row: str | None = None,
    settings: str | None = None,
) -> Cause:
    """Drift when the controller would send what it last sent; config when only the render
    settings changed since (the row did not); else a desired change."""
    if baseline is not None and baseline.desired_hash == fingerprint(body):
        return "drift"
    if (
        baseline is not None
        and row is not None
        and baseline.row_hash == row
        and baseline.settings_hash is not None
        and baseline.settings_hash != settings
    ):
        return "config"
    return "desired"


@dataclass(frozen=True)
class PruneDecision:
    allowed: bool
    deletes: int
    reason: str = ""


def guard_prune(
    *, planned_deletes: int, managed_total: int, bounds: PruneBounds, per: str = "per pass"
) -> PruneDecision:
    """Deletion is bounded: an empty or wrong desired snapshot must not wipe Vapi.
    ``managed_total`` counts managed assistants; ``planned_deletes`` may include tools."""
    if planned_deletes == 0:
        return PruneDecision(True, 0)
    if planned_deletes > bounds.max_count:
        return PruneDecision(
            False,
            planned_deletes,
            f"prune guard: {planned_deletes} deletions planned, the bound is "
            f"{bounds.max_count} {per}",
        )
    if managed_total and planned_deletes / managed_total > bounds.max_fraction:
        return PruneDecision(
            False,
            planned_deletes,
            f"prune guard: {planned_deletes} deletions planned against {managed_total} managed "
            f"assistants ({planned_deletes / managed_total:.0%}), the bound is "
            f"{bounds.max_fraction:.0%} {per}",
        )
    return PruneDecision(True, planned_deletes)


@dataclass(frozen=True)
class PassPlan:
    """What a whole pass would do: the account's tools, each organization, the prune guard."""

    tools: ToolPlan
    orgs: Mapping[UUID, OrgPlan]
    prune: PruneDecision = PruneDecision(True, 0)

    @property
    def has_changes(self) -> bool:
        return bool(self.tools.actions) or any(
            p.actions or p.blocked or p.invalid for p in self.orgs.values()
        )
