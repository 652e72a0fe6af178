"""The planner's decisions: create, adopt, update, conflicts, orphans, the prune guard."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from controller.core.actions import (
    AdoptTool,
    CreateAssistant,
    CreateTool,
    LinkAssistant,
    UpdateAssistant,
)
from controller.core.desired import DesiredAgent, DesiredOrg, DesiredTool
from controller.core.observed import ObservedAssistant, ObservedTool
from controller.core.plan import (
    AssistantContext,
    guard_prune,
    plan_org,
    plan_tools,
)
from controller.core.render import render_assistant
from controller.core.settings import PruneBounds, RenderDefaults

ORG = uuid.uuid4()
OTHER_ORG = uuid.uuid4()
BACKEND = "https://b.example"
CONTEXT = AssistantContext(
    tool_ids_by_role={"inbound": ["t1"], "outbound": ["t1"]},
    baselines={},
    defaults=RenderDefaults(),
    backend_url=BACKEND,
)


def agent(role: str = "inbound", **changes: Any) -> DesiredAgent:
    values: dict[str, Any] = {
        "agent_id": uuid.uuid4(),
        "org_id": ORG,
        "role": role,
        "name": f"A {role}",
        "system_prompt": "Hi",
    }
    return DesiredAgent(**{**values, **changes})


def assistant(vapi_id: str, metadata: dict[str, Any] | None, **body: Any) -> ObservedAssistant:
    return ObservedAssistant(
        {"id": vapi_id, "createdAt": "2026-01-01T00:00:00.000Z", "metadata": metadata, **body}
    )


def in_sync(a: DesiredAgent, vapi_id: str) -> ObservedAssistant:
    body = render_assistant(a, tool_ids=["t1"], defaults=RenderDefaults(), backend_url=BACKEND)
    return ObservedAssistant({**body, "id": vapi_id, "createdAt": "2026-01-01T00:00:00.000Z"})


def test_an_agent_without_an_assistant_gets_a_create() -> None:
    a = agent()
    plan = plan_org(
        org_id=ORG, desired=DesiredOrg(ORG, (a,)), observed=[], context=CONTEXT, prune=False
    )
    assert [type(x) for x in plan.actions] == [CreateAssistant]


def test_an_assistant_in_sync_needs_nothing() -> None:
    a = agent(vapi_assistant_id="v1")
    plan = plan_org(
        org_id=ORG,
        desired=DesiredOrg(ORG, (a,)),
        observed=[in_sync(a, "v1")],
        context=CONTEXT,
        prune=False,
    )
    assert plan.actions == ()


def test_a_tagged_assistant_the_row_does_not_name_yet_is_linked_not_recreated() -> None:
    a = agent()
    plan = plan_org(
        org_id=ORG,
        desired=DesiredOrg(ORG, (a,)),
        observed=[in_sync(a, "v1")],
        context=CONTEXT,
        prune=False,
    )
    assert plan.actions == (LinkAssistant(ORG, a.agent_id, "v1"),)


def test_a_legacy_assistant_is_adopted_with_the_tags_and_every_changed_key_sent_whole() -> None:
    a = agent(vapi_assistant_id="legacy")
    plan = plan_org(
        org_id=ORG,
        desired=DesiredOrg(ORG, (a,)),
        observed=[assistant("legacy", None, name="A inbound")],
        context=CONTEXT,
        prune=False,
    )
    (update,) = plan.actions
    assert isinstance(update, UpdateAssistant)
    assert update.cause == "adopt"
    assert update.patch["metadata"]["org_id"] == str(ORG)
    assert "name" not in update.patch
    assert set(update.patch["model"]) >= {"provider", "model", "messages", "toolIds"}


def test_an_id_tagged_for_another_org_blocks_with_no_action() -> None:
    a = agent(vapi_assistant_id="theirs")
    theirs = assistant("theirs", {"managed_by": "vapi-reconciler", "org_id": str(OTHER_ORG)})
    plan = plan_org(
        org_id=ORG, desired=DesiredOrg(ORG, (a,)), observed=[theirs], context=CONTEXT, prune=True
    )
    assert plan.blocked
    assert "another organization" in plan.blocked
    assert plan.actions == ()


def test_a_contested_id_blocks() -> None:
    mine = DesiredOrg(ORG, (agent(vapi_assistant_id="x"),))
    context = dataclasses.replace(CONTEXT, contested_ids=frozenset({"x"}))
    plan = plan_org(
        org_id=ORG, desired=mine, observed=[assistant("x", None)], context=context, prune=False
    )
    assert plan.blocked


def test_a_tagged_assistant_no_agent_wants_is_an_orphan_deleted_only_when_pruning() -> None:
    stray = assistant(
        "stray",
        {"managed_by": "vapi-reconciler", "org_id": str(ORG), "agent_id": str(uuid.uuid4())},
    )
    kept = plan_org(org_id=ORG, desired=None, observed=[stray], context=CONTEXT, prune=False)
    pruned = plan_org(org_id=ORG, desired=None, observed=[stray], context=CONTEXT, prune=True)
    assert kept.orphans == ("stray",)
    assert kept.actions == ()
    assert [a.vapi_id for a in pruned.deletes] == ["stray"]


def test_an_invalid_agent_is_reported_and_its_sibling_still_converges() -> None:
    bad, good = agent(name="x" * 50), agent("outbound")
    plan = plan_org(
        org_id=ORG, desired=DesiredOrg(ORG, (bad, good)), observed=[], context=CONTEXT, prune=False
    )
    assert list(plan.invalid) == [bad.agent_id]
    assert [type(a) for a in plan.actions] == [CreateAssistant]


def test_the_prune_guard_trips_on_count_and_on_share() -> None:
    assert guard_prune(planned_deletes=3, managed_total=100, bounds=PruneBounds(5, 0.1)).allowed
    assert not guard_prune(planned_deletes=6, managed_total=100, bounds=PruneBounds(5, 1)).allowed
    assert not guard_prune(planned_deletes=2, managed_total=4, bounds=PruneBounds(5, 0.1)).allowed


TOOL = DesiredTool("endCall", "End.", {"type": "object", "properties": {}}, "/endCall")


def ours(
    vapi_id: str, name: str = "endCall", created: str = "2026-01-01T00:00:00.000Z"
) -> ObservedTool:
    return ObservedTool(
        {
            "id": vapi_id,
            "type": "function",
            "createdAt": created,
            "function": {
                "name": name,
                "description": "End.",
                "parameters": {"type": "object", "properties": {}},
            },
            "async": True,
            "server": {"url": f"{BACKEND}/api/vapi/tools/endCall"},
        }
    )


def test_an_unregistered_tool_of_ours_is_adopted_oldest_first_and_the_copy_is_an_orphan() -> None:
    plan = plan_tools(
        tools=[TOOL],
        observed=[ours("new", created="2026-02-01T00:00:00.000Z"), ours("old")],
        registry={},
        baselines={},
        backend_url=BACKEND,
        prune=False,
    )
    assert plan.actions == (AdoptTool("endCall", "old", TOOL.definition_hash),)
    assert plan.orphans == ("new",)


def test_a_tool_of_someone_else_with_the_same_name_is_not_ours() -> None:
    foreign = ObservedTool({**ours("f").body, "server": {"url": "https://else/api/vapi/tools/x"}})
    plan = plan_tools(
        tools=[TOOL], observed=[foreign], registry={}, baselines={}, backend_url=BACKEND, prune=True
    )
    assert [type(a) for a in plan.actions] == [CreateTool]
    assert plan.orphans == ()


def plan_with_memo(
    memo: Any, agent_row: DesiredAgent, found: ObservedAssistant, context: AssistantContext
) -> Any:
    """One organization of one agent planned with ``memo`` (its in-sync verdicts)."""
    return plan_org(
        org_id=ORG,
        desired=DesiredOrg(ORG, (agent_row,)),
        observed=[found],
        context=context,
        prune=False,
        memo=memo,
    )


def test_an_agent_found_in_sync_is_not_rendered_again_while_nothing_it_depends_on_changed(
    monkeypatch: Any,
) -> None:
    import controller.core.plan as planning

    a = agent(vapi_assistant_id="v1")
    current = in_sync(a, "v1")
    memo: planning.InSyncMemo = {}
    rendered = 0
    real = planning.render_assistant

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal rendered
        rendered += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "render_assistant", counting)

    def plan(agent_row: DesiredAgent, found: ObservedAssistant, context: AssistantContext) -> Any:
        return plan_with_memo(memo, agent_row, found, context)

    assert plan(a, current, CONTEXT).actions == ()
    assert plan(dataclasses.replace(a), current, CONTEXT).actions == ()  # equal, not the same
    assert rendered == 1
    assert set(memo) == {ORG}


def test_an_in_sync_verdict_is_dropped_when_any_of_its_inputs_changes() -> None:
    from dataclasses import replace

    from controller.core.desired import Baseline
    from controller.core.plan import InSyncMemo

    a = agent(vapi_assistant_id="v1")
    current = in_sync(a, "v1")
    memo: InSyncMemo = {}

    def actions(
        agent_row: DesiredAgent = a,
        found: ObservedAssistant = current,
        context: AssistantContext = CONTEXT,
    ) -> list[type]:
        return [type(x) for x in plan_with_memo(memo, agent_row, found, context).actions]

    assert actions() == []
    assert actions(agent_row=replace(a, system_prompt="Hello")) == [UpdateAssistant]
    assert actions() == []
    edited = ObservedAssistant({**current.body, "firstMessage": "edited in the dashboard"})
    assert actions(found=edited) == [UpdateAssistant]
    assert actions() == []
    more_tools = replace(CONTEXT, tool_ids_by_role={"inbound": ["t1", "t2"], "outbound": ["t1"]})
    assert actions(context=more_tools) == [UpdateAssistant]
    assert actions() == []
    voxanne = replace(CONTEXT, defaults=RenderDefaults(voice="Rohan"))
    assert actions(context=voxanne) == [UpdateAssistant]
    assert actions() == []
    moved = replace(CONTEXT, backend_url="https://elsewhere.example")
    assert actions(context=moved) == [UpdateAssistant]
    # a baseline that makes an unequal body count as in sync, and its removal
    odd = ObservedAssistant({**current.body, "name": "Stored differently"})
    assert actions(found=odd) == [UpdateAssistant]
    from controller.core.desired import fingerprint
    from controller.core.drift import observed_hash
    from controller.core.ownership import owned_view

    body = render_assistant(a, tool_ids=["t1"], defaults=RenderDefaults(), backend_url=BACKEND)
    seen = owned_view(odd.body, CONTEXT.owned)
    trusted = replace(
        CONTEXT,
        baselines={"v1": Baseline("v1", fingerprint(body), observed_hash(body, seen))},
    )
    assert actions(found=odd, context=trusted) == []
    assert actions(found=odd, context=trusted) == []
    assert actions(found=odd) == [UpdateAssistant]


def test_the_observed_state_version_moves_on_every_change() -> None:
    from controller.core.observed import ObservedState

    state = ObservedState()
    seen = [state.version]
    state.upsert("assistant", {"id": "a1", "metadata": {"org_id": str(ORG)}})
    seen.append(state.version)
    state.upsert("tool", {"id": "t1", "type": "function"})
    seen.append(state.version)
    state.upsert("assistant", {"id": "a2", "metadata": ["unusable"]})
    seen.append(state.version)
    state.remove("assistant", "a1")
    seen.append(state.version)
    state.remove("assistant", "never-there")
    seen.append(state.version)
    assert seen == sorted(set(seen)), "strictly increasing"
