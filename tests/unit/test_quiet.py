"""Which visits leave a verdict a later visit may be answered from, and which inputs count
(``controller.reconcile.quiet``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from controller.config import Settings
from controller.core.actions import OrgPlan, UpdateAssistant
from controller.core.desired import DesiredAgent, DesiredOrg, DesiredState, OrgRows
from controller.core.observed import ObservedAssistant
from controller.core.outcome import OrgOutcome
from controller.core.plan import InSync
from controller.reconcile.quiet import PlanInputs, QuietMemo, shared_part
from tests.unit.test_plan import CONTEXT, ORG, agent, in_sync

AGENT = agent()
ASSISTANT = in_sync(AGENT, "asst-1")
SETTINGS = Settings(backend_url="https://backend.example")
SYNCED = OrgOutcome(ORG, "synced", "")
VERDICTS = {AGENT.agent_id: InSync.of(AGENT, ASSISTANT, ["t1"], CONTEXT)}


def inputs(**changes: Any) -> PlanInputs:
    values: dict[str, Any] = {
        "rows": DesiredOrg(ORG, (AGENT,)),  # what a snapshot of plain objects is read from
        "org": DesiredOrg(ORG, (AGENT,)),
        "observed": (ASSISTANT,),
        "unusable": (),
        "numbers": None,
        "baselines": (None,),
        "shared": shared_part(CONTEXT),
        "settings": SETTINGS,
    }
    return PlanInputs(**{**values, **changes})


def desired(**changes: Any) -> DesiredState:
    return DesiredState(orgs={ORG: DesiredOrg(ORG, (AGENT,))}, **changes)


def test_a_visit_that_needed_nothing_is_remembered_and_recalled() -> None:
    memo = QuietMemo()
    memo.remember(inputs(), OrgPlan(ORG, kept=("asst-1",)), SYNCED, VERDICTS)
    found = memo.recall(ORG, desired())
    assert found is not None
    assert found.outcome == SYNCED
    assert found.inputs == inputs()


UPDATE = UpdateAssistant(ORG, AGENT.agent_id, "asst-1", {"name": "x"}, {}, (), cause="desired")


@pytest.mark.parametrize(
    ("plan", "outcome"),
    [
        (OrgPlan(ORG, actions=(UPDATE,)), SYNCED),
        (OrgPlan(ORG, orphans=("asst-9",)), SYNCED),
        (OrgPlan(ORG, held=(UPDATE,), held_reason="guard"), OrgOutcome(ORG, "blocked", "")),
        (OrgPlan(ORG, invalid={AGENT.agent_id: "bad"}), OrgOutcome(ORG, "failed", "bad")),
        (OrgPlan(ORG, blocked="conflict"), OrgOutcome(ORG, "blocked", "conflict")),
        (OrgPlan(ORG, error="bug"), OrgOutcome(ORG, "failed", "bug")),
        (OrgPlan(ORG), OrgOutcome(ORG, "synced", "", writes=1)),
        (OrgPlan(ORG), OrgOutcome(ORG, "progressing", "observe mode")),
    ],
    ids=["actions", "orphans", "held", "invalid", "blocked", "error", "wrote", "unconverged"],
)
def test_a_visit_that_did_or_found_something_leaves_no_verdict(
    plan: OrgPlan, outcome: OrgOutcome
) -> None:
    memo = QuietMemo()
    memo.remember(inputs(), plan, outcome, VERDICTS)
    assert ORG not in memo


def test_the_memo_keeps_the_observed_bodys_strings_not_a_copy_of_every_prompt() -> None:
    prompt = "".join(["You are ", "a receptionist."])  # not the same object as the body's
    row_agent = dataclasses.replace(AGENT, system_prompt=prompt)
    body = {**ASSISTANT.body, "model": {**ASSISTANT.body["model"]}}
    body["model"]["messages"] = [{"role": "system", "content": "You are a receptionist."}]
    current = ObservedAssistant(body)
    verdicts = {AGENT.agent_id: InSync.of(row_agent, current, ["t1"], CONTEXT)}
    rows = ((AGENT.agent_id, prompt),)
    memo = QuietMemo()
    memo.remember(
        inputs(rows=rows, org=DesiredOrg(ORG, (row_agent,))), OrgPlan(ORG), SYNCED, verdicts
    )
    kept = memo.recall(ORG, DesiredState(orgs=OrgRows({ORG: rows}, lambda _: row_agent)))
    assert kept is not None
    stored = body["model"]["messages"][0]["content"]
    assert kept.inputs.rows == rows
    assert kept.inputs.rows[0][1] is stored  # type: ignore[index]
    assert kept.inputs.org is not None
    assert kept.inputs.org.agents[0].system_prompt is stored


def test_a_visit_without_a_verdict_on_an_agent_is_not_remembered() -> None:
    memo = QuietMemo()
    memo.remember(inputs(), OrgPlan(ORG), SYNCED, {})
    assert ORG not in memo


def test_a_create_in_doubt_or_an_organization_no_longer_desired_is_never_answered() -> None:
    memo = QuietMemo()
    memo.remember(inputs(), OrgPlan(ORG), SYNCED, VERDICTS)
    doubt = {AGENT.agent_id: dt.datetime.now(dt.UTC)}
    assert memo.recall(ORG, desired(intents=doubt)) is None
    assert memo.recall(ORG, DesiredState()) is None
    assert memo.recall(ORG, desired()) is not None


def test_equal_rows_and_the_same_observed_objects_are_the_same_inputs() -> None:
    again = inputs(rows=DesiredOrg(ORG, (dataclasses.replace(AGENT),)))
    assert again == inputs(), "rows are compared by value: every load makes new ones"
    rows = ((uuid.UUID(int=1), "inbound", "Hi"),)
    assert inputs(rows=rows) == inputs(rows=tuple(tuple(r) for r in rows))


@pytest.mark.parametrize(
    "changed",
    [
        {"rows": DesiredOrg(ORG, (dataclasses.replace(AGENT, system_prompt="Changed"),))},
        {"observed": (ObservedAssistant({**ASSISTANT.body, "firstMessage": "Edited"}),)},
        {"observed": ()},
        {"numbers": ()},
        {"baselines": ("a baseline",)},
        {"shared": shared_part(dataclasses.replace(CONTEXT, backend_url="https://other"))},
        {"settings": SETTINGS.model_copy(update={"backend_url": "https://other"})},
        {"unusable": ("unusable",)},
    ],
    ids=["row", "drift", "gone", "numbers", "baseline", "context", "reload", "unusable"],
)
def test_any_changed_input_is_a_different_plan(changed: dict[str, Any]) -> None:
    assert inputs(**changed) != inputs()


def test_a_reload_that_changed_nothing_changes_no_input() -> None:
    assert inputs(settings=SETTINGS.model_copy()) == inputs()


def test_an_organization_read_from_rows_is_made_only_when_asked_for() -> None:
    made: list[object] = []

    def agent_of(row: Sequence[Any]) -> DesiredAgent:
        made.append(row)
        return agent(name=row[0])

    orgs = OrgRows({ORG: (("A",), ("B",))}, agent_of)
    state = DesiredState(orgs=orgs)
    assert ORG in state.orgs
    assert len(state.orgs) == 1
    assert list(state.orgs) == [ORG]
    assert state.rows_of(ORG) == (("A",), ("B",))
    assert made == [], "membership, length, iteration and rows make nothing"
    assert [a.name for a in state.orgs[ORG].agents] == ["A", "B"]
    assert state.orgs.get(ORG) is state.orgs[ORG], "made once"
    assert len(made) == 2
    assert state.rows_of(uuid.uuid4()) is None


def test_forget_drops_the_verdict() -> None:
    memo = QuietMemo()
    memo.remember(inputs(), OrgPlan(ORG), SYNCED, VERDICTS)
    memo.forget(ORG)
    assert ORG not in memo
    assert memo.recall(uuid.uuid4(), desired()) is None
