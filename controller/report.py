"""Render a plan for people (text) and machines (JSON), and the helpers every report shares
(times, values). Pure: no I/O; the settings are read only for what they say about writes.

A plan says what will not be applied and why: a paused controller, observe mode, a paused
organization, an ownership conflict, prune off or held by its guard. Values shown pass
through ``controller.secret.scrub``."""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from controller.config import Settings
from controller.core.actions import (
    Action,
    AdoptTool,
    BindPhoneNumber,
    CreateAssistant,
    CreateTool,
    DeleteAssistant,
    DeleteTool,
    LinkAssistant,
    OrgPlan,
    ReleasePhoneNumber,
    UpdateAssistant,
    UpdateTool,
)
from controller.core.drift import FieldChange
from controller.core.plan import PassPlan
from controller.secret import scrub

SHORT = 80


@dataclass(frozen=True)
class Controls:
    """What the operator's controls say about writes (from ``config.toml``)."""

    paused: bool = False
    observe: bool = False
    paused_orgs: frozenset[UUID] = frozenset()
    prune: bool = False

    @classmethod
    def of(cls, settings: Settings) -> Controls:
        c = settings.controller
        return cls(c.paused, c.mode == "observe", frozenset(c.paused_orgs), c.prune)

    @property
    def held(self) -> str | None:
        """Why no write at all will be made, or None."""
        if self.paused:
            return "the controller is paused ([controller] paused = true)"
        if self.observe:
            return 'observe mode ([controller] mode = "observe"): drift is reported, not undone'
        return None

    def org_held(self, org: OrgPlan) -> str | None:
        """Why nothing of this organization will be applied, or None."""
        if org.blocked:
            return f"blocked: {org.blocked}"
        if self.held:
            return self.held
        if org.org_id in self.paused_orgs:
            return "the organization is paused ([controller] paused_orgs)"
        return None


def plan_text(plan: PassPlan, *, controls: Controls | None = None) -> str:
    controls = controls or Controls()
    lines: list[str] = []
    if controls.held:
        lines.append(f"! nothing below will be applied: {controls.held}")
    if plan.tools.actions or plan.tools.invalid:
        lines.append("tools (shared by every organization)")
        for tool_action in plan.tools.actions:
            lines += [f"  {_action_line(tool_action)}", *_details(tool_action)]
        lines += [f"  ! tool {name}: {why}" for name, why in plan.tools.invalid.items()]
    for org in _shown(plan):
        lines.append(f"organization {org.org_id}")
        held = controls.org_held(org)
        if held and not controls.held:
            lines.append(f"  x nothing will be applied: {held}")
        for action in org.actions:
            lines += [f"  {_action_line(action)}", *_details(action)]
        lines += [f"  ! agent {agent}: {why}" for agent, why in org.invalid.items()]
        for action in org.held:
            lines += [f"  = held: {_action_line(action)}", *_details(action)]
        if org.held:
            lines.append(f"  ! {org.held_reason}")
        lines += [
            f"  ? assistant {vid}: orphaned, left alone ({_orphan_why(plan, controls)})"
            for vid in _left_alone(org)
        ]
    if not plan.prune.allowed:
        lines.append(f"! {plan.prune.reason}")
    lines.append(summary_line(plan))
    return "\n".join(lines)


def summary_line(plan: PassPlan) -> str:
    counts = _counts(plan)
    orphans = f"{counts['orphans']} orphaned left alone"
    if not plan.has_changes:
        left = f" ({orphans})" if counts["orphans"] else ""
        return f"No changes. Vapi matches the desired state{left}."
    return (
        f"Plan: {counts['create']} to create, {counts['update']} to update "
        f"({counts['drift']} drift made outside the controller), {counts['delete']} to delete, "
        f"{counts['invalid']} invalid, {counts['blocked']} blocked, {orphans}."
    )


def plan_json(plan: PassPlan, *, controls: Controls | None = None) -> dict[str, Any]:
    controls = controls or Controls()
    counts = _counts(plan)
    return {
        "changes": plan.has_changes,
        "summary": {k: counts[k] for k in SUMMARY},
        "writes": {"enabled": controls.held is None, "reason": controls.held},
        "prune": {
            "enabled": controls.prune,
            "allowed": plan.prune.allowed,
            "reason": plan.prune.reason
            or ("" if controls.prune else "prune is off ([controller] prune = false)"),
        },
        "tools": {
            "actions": [_action_json(a) for a in plan.tools.actions],
            "invalid": dict(plan.tools.invalid),
        },
        "organizations": [_org_json(org, controls.org_held(org)) for org in _shown(plan)],
    }


SUMMARY = ("create", "update", "drift", "delete", "invalid", "blocked", "orphans")


def _shown(plan: PassPlan) -> list[OrgPlan]:
    """Organizations with something to do or to report."""
    return [
        o for o in plan.orgs.values() if o.actions or o.invalid or o.blocked or o.orphans or o.held
    ]


def _left_alone(org: OrgPlan) -> list[str]:
    pruned = {a.vapi_id for a in org.deletes}
    return [vid for vid in org.orphans if vid not in pruned]


def _orphan_why(plan: PassPlan, controls: Controls) -> str:
    if not controls.prune:
        return "prune is off"
    return "held by the prune guard" if not plan.prune.allowed else "prune is guarded"


def rfc3339(moment: datetime | None) -> str | None:
    """``2026-11-27T16:19:26Z``: RFC 3339, UTC, whole seconds (None stays None)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _counts(plan: PassPlan) -> Counter[str]:
    counts: Counter[str] = Counter()
    actions: list[Action] = [*plan.tools.actions]
    for org in plan.orgs.values():
        actions += org.actions
        counts["invalid"] += len(org.invalid)
        counts["blocked"] += bool(org.blocked)
        counts["orphans"] += len(_left_alone(org))
    counts["invalid"] += len(plan.tools.invalid)
    for action in actions:
        if isinstance(action, CreateAssistant | CreateTool):
            counts["create"] += 1
        elif isinstance(action, UpdateAssistant | UpdateTool):
            counts["update"] += 1
            counts["drift"] += action.cause == "drift"
        elif isinstance(action, DeleteAssistant | DeleteTool):
            counts["delete"] += 1
        elif isinstance(action, BindPhoneNumber | ReleasePhoneNumber):
            counts["update"] += 1
    return counts


def _action_line(action: Action) -> str:
    match action:
        case CreateTool():
            return f"+ tool {action.tool_name}"
        case AdoptTool():
            return f"= tool {action.tool_name}: adopt existing {action.vapi_id}"
        case UpdateTool():
            return f"~ tool {action.tool_name} ({action.vapi_id}) [{_cause(action.cause)}]"
        case DeleteTool():
            return f"- tool {action.tool_name} ({action.vapi_id}): {action.reason}"
        case CreateAssistant():
            return f"+ assistant for agent {action.agent_id} ({action.body['name']!r})"
        case LinkAssistant():
            return f"= assistant {action.vapi_id}: adopt for agent {action.agent_id}"
        case UpdateAssistant():
            return (
                f"~ assistant {action.vapi_id} (agent {action.agent_id}) [{_cause(action.cause)}]"
            )
        case DeleteAssistant():
            return f"- assistant {action.vapi_id}: {action.reason}"
        case BindPhoneNumber():
            target = action.assistant_id or "the assistant created above"
            was = action.previous or "nowhere"
            return (
                f"~ phone number {action.number_id}: route to {target} (was {was}) "
                f"[{_cause(action.cause)}]"
            )
        case ReleasePhoneNumber():
            return (
                f"- phone number {action.number_id}: release from {action.assistant_id} "
                "(no desired inbound agent wants it)"
            )


def _cause(cause: str) -> str:
    return {
        "drift": "drift made outside the controller",
        "adopt": "adopt and tag",
        "desired": "desired change",
        "relink": "relink to the agent's assistant",
        "config": "configuration change",
    }[cause]


def _details(action: Action) -> list[str]:
    """Under an action's line: the fields an update changes, the body a create sends."""
    if isinstance(action, UpdateAssistant | UpdateTool):
        return _changes(action.changes, indent="      ")
    if isinstance(action, CreateAssistant | CreateTool):
        return _body(action.body, indent="      ")
    return []


def _body(body: Mapping[str, Any], *, indent: str) -> list[str]:
    """A create's body, one field a line; objects one level deep as dotted paths."""
    fields: list[tuple[str, Any]] = []
    for name, value in sorted(scrub(dict(body)).items()):
        if isinstance(value, dict) and value:
            fields += [(f"{name}.{key}", inner) for key, inner in sorted(value.items())]
        else:
            fields.append((name, value))
    lines: list[str] = []
    for name, value in fields:
        shown = show_value(value)
        if len(shown) <= SHORT and "\n" not in shown:
            lines.append(f"{indent}{name}: {shown}")
        else:
            lines.append(f"{indent}{name}:")
            lines += [f"{indent}  {line}" for line in shown.splitlines()]
    return lines


def _changes(changes: Sequence[FieldChange], *, indent: str) -> list[str]:
    lines: list[str] = []
    for change in changes:
        before, after = (
            show_value(scrub(change.before, key=change.path)),
            show_value(scrub(change.after, key=change.path)),
        )
        if len(before) <= SHORT and len(after) <= SHORT and "\n" not in before + after:
            lines.append(f"{indent}{change.path}: {before} -> {after}")
            continue
        lines.append(f"{indent}{change.path}:")
        diff = difflib.unified_diff(
            before.splitlines(), after.splitlines(), "before", "after", n=1, lineterm=""
        )
        lines += [f"{indent}  {line}" for line in diff]
    return lines


def show_value(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, str) and len(value) <= SHORT:
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        return "\n".join(f"[{m.get('role')}] {m.get('content')}" for m in value)
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return (
        text
        if len(text) <= SHORT
        else json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
    )


def _action_json(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(action).__name__}
    for name in ("tool_name", "vapi_id", "number_id", "assistant_id", "cause", "reason"):
        if hasattr(action, name):
            out[name] = getattr(action, name)
    for name in ("org_id", "agent_id"):
        if hasattr(action, name):
            out[name] = str(getattr(action, name))
    if isinstance(action, UpdateAssistant | UpdateTool):
        out["changes"] = [
            {
                "path": c.path,
                "before": scrub(c.before, key=c.path),
                "after": scrub(c.after, key=c.path),
            }
            for c in action.changes
        ]
    if isinstance(action, CreateAssistant | CreateTool):
        out["body"] = scrub(dict(action.body))
    return out


def _org_json(org: OrgPlan, held: str | None) -> dict[str, Any]:
    return {
        "org_id": str(org.org_id),
        "held": held,
        "blocked": org.blocked,
        "actions": [_action_json(a) for a in org.actions],
        "invalid": {str(agent): why for agent, why in org.invalid.items()},
        "orphans": list(org.orphans),
        "held_updates": [_action_json(a) for a in org.held],
        "held_reason": org.held_reason or None,
    }
