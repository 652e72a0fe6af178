"""Everything read from Vapi is checked for shape before use: an object of the wrong shape
is set aside as unusable (by id, with what is wrong), never crashes, never gets re-created."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from controller.core.desired import DesiredAgent, DesiredOrg
from controller.core.observed import ObservedState, shape_problem
from controller.core.plan import AssistantContext, plan_org
from controller.core.settings import RenderDefaults

ORG = UUID(int=7)
AGENT = UUID(int=70)
STAMP = "2026-01-01T00:00:00.000Z"


def assistant(vapi_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": vapi_id, "createdAt": STAMP, "updatedAt": STAMP, **fields}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"metadata": ["x"]}, "metadata is a list, not an object"),
        ({"metadata": "managed"}, "metadata is a str, not an object"),
    ],
)
def test_an_assistant_whose_ownership_cannot_be_read_is_named_with_what_is_wrong(
    body: dict[str, Any], problem: str
) -> None:
    assert shape_problem("assistant", assistant("a1", **body)) == problem


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"function": "checkAvailability"}, "function is a str, not an object"),
        ({"function": {"name": 7}}, "function.name is a int, not a string"),
        ({"server": {"url": ["x"]}}, "server.url is a list, not a string"),
    ],
)
def test_a_tool_whose_name_or_url_cannot_be_read_is_unusable(
    body: dict[str, Any], problem: str
) -> None:
    assert shape_problem("tool", {"id": "t1", "type": "function", **body}) == problem


def test_wrong_types_in_fields_the_controller_writes_whole_are_drift_not_unusable() -> None:
    body = assistant("a1", model="gpt-4", voice=["x"], name=5)
    assert shape_problem("assistant", body) is None
    assert ObservedState([body]).assistants[0].tool_ids == ()


def test_absent_and_null_fields_are_fine() -> None:
    assert shape_problem("assistant", assistant("a1", model=None, metadata=None)) is None
    assert shape_problem("tool", {"id": "t", "function": None}) is None


def test_an_unusable_assistant_is_kept_apart_and_blocks_its_agent_from_being_re_created() -> None:
    tags = {"managed_by": "vapi-reconciler", "org_id": str(ORG), "agent_id": str(AGENT)}
    observed = ObservedState([assistant("a1", metadata=[tags])])
    agent = DesiredAgent(AGENT, ORG, "inbound", "Front desk", "Be kind.", vapi_assistant_id="a1")

    plan = plan_org(
        org_id=ORG,
        desired=DesiredOrg(ORG, (agent,)),
        observed=observed.for_org(ORG, ["a1"]),
        unusable=observed.unusable_for_org(ORG, ["a1"]),
        context=AssistantContext({}, {}, RenderDefaults(), "https://b.test"),
        prune=True,
    )

    assert observed.assistants == ()
    assert observed.holds("assistant", "a1")
    assert plan.actions == ()
    assert "assistant a1 as Vapi returns it is unusable (metadata is a list" in plan.invalid[AGENT]


def test_an_unusable_object_fixed_in_vapi_becomes_usable_again() -> None:
    observed = ObservedState([assistant("a1", metadata="x")])
    observed.upsert("assistant", assistant("a1", metadata={}))
    assert [a.id for a in observed.assistants] == ["a1"]
    assert observed.unusable == {}
