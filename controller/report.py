"""Render a plan and the status table for people (text) and machines (JSON). Pure."""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

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
from desired_state.findings import Finding

SHORT = 80
STATE_ORDER = {"failed": 0, "blocked": 1, "progressing": 2, "paused": 3, "synced": 4}


def plan_text(plan: PassPlan) -> str:
    lines: list[str] = []
    if plan.tools.actions or plan.tools.invalid:
        lines.append("tools (shared by every organization)")
        lines += [f"  {_action_line(tool_action)}" for tool_action in plan.tools.actions]
        for tool_action in plan.tools.actions:
            if isinstance(tool_action, UpdateTool):
                lines += _changes(tool_action.changes, indent="      ")
        lines += [f"  ! tool {name}: {why}" for name, why in plan.tools.invalid.items()]
    for org_id, org in plan.orgs.items():
        if not (org.actions or org.invalid or org.blocked or org.orphans):
            continue
        lines.append(f"organization {org_id}")
        if org.blocked:
            lines.append(f"  x blocked, nothing will be written: {org.blocked}")
        for action in org.actions:
            lines.append(f"  {_action_line(action)}")
            if isinstance(action, UpdateAssistant):
                lines += _changes(action.changes, indent="      ")
        lines += [f"  ! agent {agent}: {why}" for agent, why in org.invalid.items()]
        pruned = {a.vapi_id for a in org.deletes}
        lines += [
            f"  ? assistant {vid}: orphaned, left alone (prune is off or guarded)"
            for vid in org.orphans
            if vid not in pruned
        ]
    if not plan.prune.allowed:
        lines.append(f"! {plan.prune.reason}")
    lines.append(summary_line(plan))
    return "\n".join(lines)


def summary_line(plan: PassPlan) -> str:
    counts = _counts(plan)
    if not plan.has_changes:
        return "No changes. Vapi matches the desired state."
    return (
        f"Plan: {counts['create']} to create, {counts['update']} to update "
        f"({counts['drift']} drift made outside the controller), {counts['delete']} to delete, "
        f"{counts['invalid']} invalid, {counts['blocked']} blocked."
    )


def plan_json(plan: PassPlan) -> dict[str, Any]:
    counts = _counts(plan)
    return {
        "changes": plan.has_changes,
        "summary": {
            k: counts[k] for k in ("create", "update", "drift", "delete", "invalid", "blocked")
        },
        "prune": {"allowed": plan.prune.allowed, "reason": plan.prune.reason},
        "tools": {
            "actions": [_action_json(a) for a in plan.tools.actions],
            "invalid": dict(plan.tools.invalid),
        },
        "organizations": [
            _org_json(org)
            for org in plan.orgs.values()
            if org.actions or org.invalid or org.blocked or org.orphans
        ],
    }


def status_rows_sorted(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Unreconciled first (oldest incident first), then by state."""
    return sorted(
        rows,
        key=lambda r: (
            r["unreconciled_since"] is None,
            r["unreconciled_since"] or datetime.max.replace(tzinfo=None),
            STATE_ORDER.get(r["state"], 9),
            str(r["org_id"]),
        ),
    )


def status_table(rows: Sequence[Mapping[str, Any]], *, now: datetime | None = None) -> Table:
    """The status rows as a table: state, age of the incident, last sync, reason."""
    now = now or datetime.now(UTC)
    table = Table(title=f"{len(rows)} organizations")
    table.add_column("organization", no_wrap=True)
    for column in ("state", "age", "reason", "last synced", "message"):
        table.add_column(column, overflow="fold")
    for row in rows:
        since, synced = row["unreconciled_since"], row["last_synced_at"]
        table.add_row(
            str(row["org_id"]),
            row["state"],
            _age((now - since).total_seconds()) if since else "",
            row.get("reason") or "",
            synced.strftime("%Y-%m-%d %H:%M:%S") if synced else "never",
            (row["message"] or "")[:200],
        )
    return table


def findings_table(findings: Sequence[Finding]) -> Table:
    """Security findings by where they are (never what they hold)."""
    table = Table(title=f"{len(findings)} security findings: remove these from the platform")
    for column in ("organization", "kind", "where"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        table.add_row(str(finding.org_id), finding.kind, finding.location)
    return table


def _age(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m" if whole >= 3600 else f"{whole}s"


def _counts(plan: PassPlan) -> Counter[str]:
    counts: Counter[str] = Counter()
    actions: list[Action] = [*plan.tools.actions]
    for org in plan.orgs.values():
        actions += org.actions
        counts["invalid"] += len(org.invalid)
        counts["blocked"] += bool(org.blocked)
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
    }[cause]


def _changes(changes: Sequence[FieldChange], *, indent: str) -> list[str]:
    lines: list[str] = []
    for change in changes:
        before, after = _show(change.before), _show(change.after)
        if len(before) <= SHORT and len(after) <= SHORT and "\n" not in before + after:
            lines.append(f"{indent}{change.path}: {before} -> {after}")
            continue
        lines.append(f"{indent}{change.path}:")
        diff = difflib.unified_diff(
            before.splitlines(), after.splitlines(), "before", "after", n=1, lineterm=""
        )
        lines += [f"{indent}  {line}" for line in diff]
    return lines


def _show(value: Any) -> str:
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
            {"path": c.path, "before": c.before, "after": c.after} for c in action.changes
        ]
    return out


def _org_json(org: OrgPlan) -> dict[str, Any]:
    return {
        "org_id": str(org.org_id),
        "blocked": org.blocked,
        "actions": [_action_json(a) for a in org.actions],
        "invalid": {str(agent): why for agent, why in org.invalid.items()},
        "orphans": list(org.orphans),
    }
