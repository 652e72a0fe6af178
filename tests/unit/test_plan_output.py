"""``plan`` output for a scripted set of changes, against golden files; ``--json`` against
its documented schema (docs/plan.schema.json). Regenerate the golden files after a deliberate
change with ``UPDATE_GOLDEN=1 ./dev test tests/unit/test_plan_output.py`` and review the diff."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import jsonschema

from controller.config import Settings
from controller.core.desired import (
    Baseline,
    DesiredAgent,
    DesiredOrg,
    DesiredState,
    DesiredTool,
    fingerprint,
)
from controller.core.observed import ObservedState
from controller.core.plan import (
    PassPlan,
    assistant_context,
    guard_prune,
    plan_org,
    plan_tools,
    planned_tool_ids,
)
from controller.core.render import render_assistant, render_tool
from controller.report import Controls, plan_json, plan_text

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
SCHEMA = ROOT / "docs" / "plan.schema.json"
BACKEND = "https://backend.example"
STAMP = "2026-01-01T00:00:00.000Z"
PROMPT = "\n".join(f"Rule {n}: be kind to caller number {n}." for n in range(1, 9))


def org(n: int) -> UUID:
    return UUID(int=n)


def agent(org_n: int, role: str, **fields: Any) -> DesiredAgent:
    values: dict[str, Any] = {
        "name": f"Clinic {org_n} {role}",
        "system_prompt": PROMPT,
        "first_message": "Hello!",
        "voice_provider": "11labs",
        "voice": "rachel",
        **fields,
    }
    return DesiredAgent(
        agent_id=UUID(int=org_n * 100 + (role == "outbound")),
        org_id=org(org_n),
        role=role,
        **values,
    )


def observed_assistant(vapi_id: str, desired: DesiredAgent, **edits: Any) -> dict[str, Any]:
    body = render_assistant(
        desired, tool_ids=["tool-1"], defaults=Settings().defaults, backend_url=BACKEND
    )
    return {**body, **edits, "id": vapi_id, "createdAt": STAMP, "updatedAt": STAMP}


SETTINGS = Settings.model_validate(
    {"backend_url": BACKEND, "controller": {"prune": True, "max_prune_fraction": 0.5}}
)
CONTROLS = Controls.of(SETTINGS)


def scripted_plan(settings: Settings = SETTINGS) -> PassPlan:
    booking = DesiredTool(
        "book_appointment", "Book a visit", {"type": "object", "properties": {}}, "/book"
    )
    booking_before = DesiredTool(
        "book_appointment", "Book", {"type": "object", "properties": {}}, "/book"
    )
    in_sync = agent(1, "inbound", vapi_assistant_id="asst-in-sync")
    edited_in_vapi = agent(1, "outbound", vapi_assistant_id="asst-drifted")
    prompt_changed = agent(2, "inbound", vapi_assistant_id="asst-new-prompt")
    prompt_before = agent(2, "inbound", system_prompt=PROMPT.replace("kind", "brief", 1))
    to_create = agent(2, "outbound")
    invalid = agent(4, "inbound", voice_provider="no-such-provider")
    orphan = observed_assistant("asst-orphan", agent(3, "inbound"))
    drifted = observed_assistant("asst-drifted", edited_in_vapi, firstMessage="Edited!")
    renamed = observed_assistant("asst-new-prompt", prompt_before)
    tool = {
        **render_tool(booking_before, backend_url=BACKEND),
        "type": "function",
        "id": "tool-1",
        "createdAt": STAMP,
        "updatedAt": STAMP,
    }
    baselines = {
        "asst-drifted": Baseline("asst-drifted", fingerprint(_body(edited_in_vapi)), None),
        "asst-new-prompt": Baseline("asst-new-prompt", fingerprint(_body(prompt_before)), None),
    }
    desired = DesiredState(
        orgs={
            org(1): DesiredOrg(org(1), (in_sync, edited_in_vapi)),
            org(2): DesiredOrg(org(2), (prompt_changed, to_create)),
            org(4): DesiredOrg(org(4), (invalid,)),
        },
        tools=(booking,),
        tool_ids={"book_appointment": "tool-1"},
        baselines=baselines,
        known_org_ids=frozenset({org(3)}),
    )
    observed = ObservedState(
        [observed_assistant("asst-in-sync", in_sync), drifted, renamed, orphan], [tool]
    )
    return plan_snapshot(settings, desired, observed)


def plan_snapshot(settings: Settings, desired: DesiredState, observed: ObservedState) -> PassPlan:
    """What ``plan_pass`` makes of a snapshot, from the core's functions (no I/O here)."""
    tools = plan_tools(
        tools=desired.tools,
        observed=observed.tools,
        registry=desired.tool_ids,
        baselines=desired.baselines,
        backend_url=settings.backend_url,
        prune=settings.controller.prune,
    )
    desired = replace(desired, tool_ids=planned_tool_ids(desired.tool_ids, tools))
    context = assistant_context(
        desired, observed, defaults=settings.rendering, backend_url=settings.backend_url
    )
    visit = sorted(set(desired.orgs) | observed.tagged_org_ids() | desired.known_org_ids, key=str)
    orgs = {}
    for org_id in visit:
        found = desired.orgs.get(org_id)
        named = [a.vapi_assistant_id for a in found.agents] if found else []
        orgs[org_id] = plan_org(
            org_id=org_id,
            desired=found,
            observed=observed.for_org(org_id, named),
            context=context,
            prune=settings.controller.prune,
        )
    decision = guard_prune(
        planned_deletes=sum(len(p.deletes) for p in orgs.values()) + len(tools.orphans),
        managed_total=observed.managed_count(),
        bounds=settings.prune_bounds,
    )
    if not decision.allowed:
        orgs = {org_id: p.without_deletes() for org_id, p in orgs.items()}
    return PassPlan(tools, orgs, decision)


def _body(desired: DesiredAgent) -> dict[str, Any]:
    return render_assistant(
        desired, tool_ids=["tool-1"], defaults=Settings().defaults, backend_url=BACKEND
    )


def matches_golden(name: str, actual: str) -> bool:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual)
    return path.read_text() == actual


def test_plan_text_matches_the_golden_file() -> None:
    assert matches_golden("plan.txt", plan_text(scripted_plan(), controls=CONTROLS) + "\n")


def test_plan_json_matches_the_golden_file_and_its_schema() -> None:
    document = plan_json(scripted_plan(), controls=CONTROLS)

    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert matches_golden("plan.json", json.dumps(document, indent=2, sort_keys=True) + "\n")


def test_the_schema_rejects_a_plan_missing_its_summary() -> None:
    document = plan_json(scripted_plan())
    del document["summary"]

    errors = list(
        jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).iter_errors(document)
    )

    assert [e.message for e in errors] == ["'summary' is a required property"]


def controls(**controller: Any) -> Controls:
    return Controls.of(Settings.model_validate({"controller": controller}))


def test_a_paused_controller_marks_the_whole_plan_as_not_applied() -> None:
    text = plan_text(scripted_plan(), controls=controls(paused=True))
    document = plan_json(scripted_plan(), controls=controls(paused=True))

    assert text.splitlines()[0] == (
        "! nothing below will be applied: the controller is paused ([controller] paused = true)"
    )
    assert document["writes"] == {
        "enabled": False,
        "reason": "the controller is paused ([controller] paused = true)",
    }
    assert all(org["held"] for org in document["organizations"])


def test_observe_mode_marks_the_plan_as_reported_only() -> None:
    document = plan_json(scripted_plan(), controls=controls(mode="observe"))

    assert document["writes"]["enabled"] is False
    assert "observe mode" in document["writes"]["reason"]


def test_a_paused_organization_is_marked_and_the_others_are_not() -> None:
    paused = controls(paused_orgs=[str(org(2))])

    text = plan_text(scripted_plan(), controls=paused)
    held = {
        o["org_id"]: o["held"] for o in plan_json(scripted_plan(), controls=paused)["organizations"]
    }

    section = text.split(f"organization {org(2)}")[1].splitlines()
    assert section[1] == (
        "  x nothing will be applied: the organization is paused ([controller] paused_orgs)"
    )
    assert held[str(org(2))]
    assert held[str(org(1))] is None


def test_with_prune_off_orphans_are_counted_and_json_says_prune_is_off() -> None:
    off = Settings.model_validate({"backend_url": BACKEND})
    plan = scripted_plan(off)

    text = plan_text(plan, controls=Controls.of(off))
    document = plan_json(plan, controls=Controls.of(off))

    assert "  ? assistant asst-orphan: orphaned, left alone (prune is off)" in text
    assert text.endswith("0 blocked, 1 orphaned left alone.")
    assert document["summary"]["orphans"] == 1
    assert document["prune"]["enabled"] is False
    assert document["prune"]["reason"] == "prune is off ([controller] prune = false)"


def test_a_create_shows_the_body_it_will_send_with_secrets_redacted() -> None:
    plan = scripted_plan()
    (create,) = [a for a in plan.orgs[org(2)].actions if type(a).__name__ == "CreateAssistant"]
    secret = replace(create, body={**create.body, "server": {"url": BACKEND, "secret": "s3cr3t"}})
    plan = replace(
        plan,
        orgs={**plan.orgs, org(2): replace(plan.orgs[org(2)], actions=(secret,))},
    )

    text = plan_text(plan, controls=CONTROLS)
    (action,) = plan_json(plan, controls=CONTROLS)["organizations"][1]["actions"]

    assert '      name: "Clinic 2 outbound"' in text
    assert "s3cr3t" not in text + json.dumps(action)
    assert action["body"]["server"] == {"url": BACKEND, "secret": "***"}
