"""Property: any agent row, however hostile, renders into a body Vapi accepts or fails with
``InvalidAgentError``; nothing else ever escapes. (The same rows through Postgres and a whole
pass: tests/integration/test_hostile_rows.py.)"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.desired import DesiredAgent, DesiredTool
from controller.core.render import (
    InvalidAgentError,
    InvalidToolError,
    render_assistant,
    render_tool,
)
from controller.core.settings import RenderDefaults
from controller.simulator.validation import assistant_problems, tool_problems
from tests.hostile_strategies import agent_rows


@settings(max_examples=400, deadline=None)
@given(row=agent_rows())
def test_a_hostile_row_renders_valid_or_fails_clearly(row: dict[str, object]) -> None:
    agent = DesiredAgent(agent_id=uuid.uuid4(), org_id=uuid.uuid4(), **row)  # type: ignore[arg-type]
    try:
        body = render_assistant(
            agent, tool_ids=["t-1"], defaults=RenderDefaults(), backend_url="https://b.test"
        )
    except InvalidAgentError as exc:
        refused, problems = str(exc), []
    else:
        refused, problems = "", assistant_problems(body, update=False)
    assert problems == []
    assert refused or body


@given(temperature=st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.1, 2.01]))
def test_temperatures_out_of_range_or_not_numbers_are_invalid(temperature: float) -> None:
    agent = DesiredAgent(
        uuid.uuid4(), uuid.uuid4(), "inbound", "Front desk", "Be kind.", temperature=temperature
    )
    with pytest.raises(InvalidAgentError, match="temperature"):
        render_assistant(agent, tool_ids=[], defaults=RenderDefaults(), backend_url="https://b")


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
SCHEMA_WORDS = st.sampled_from(["type", "properties", "required", "items", "enum", "minimum"])


@settings(max_examples=300, deadline=None)
@given(
    parameters=st.dictionaries(SCHEMA_WORDS | st.text(max_size=8), JSON, max_size=4).map(
        lambda d: {"type": "object", **d}
    )
    | JSON,
    name=st.sampled_from(["endCall", "lookupCaller"]) | st.text(max_size=70),
    path=st.sampled_from(["/end", "/lookup"]) | st.text(max_size=20),
)
def test_a_hostile_tool_definition_renders_valid_or_fails_clearly(
    parameters: object, name: str, path: str
) -> None:
    tool = DesiredTool(name=name, description="d", parameters=parameters, path=path)  # type: ignore[arg-type]
    try:
        body = render_tool(tool, backend_url="https://b.test")
    except InvalidToolError as exc:
        refused, problems = str(exc), []
    else:
        refused, problems = "", tool_problems({"type": "function", **body}, stored_type=None)
    assert problems == []
    assert refused or body
