"""Render ``history`` (the Vapi writes, newest first) for people and machines. Pure.

The values shown were redacted before they were stored (``controller.secret.scrub``);
they pass through ``scrub`` again here, so a row written before that (or by hand) cannot
print a secret either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.report import SHORT, rfc3339, show_value
from controller.secret import scrub

CAUSES = {
    "desired": "desired change",
    "drift": "drift",
    "adoption": "adoption",
    "relink": "relink",
    "prune": "prune",
}


def history_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """One block per write: a line saying when, where, what and how it went, then the fields
    it changed (an update: before -> after; a create: the fields it set)."""
    if not rows:
        return "No Vapi writes recorded."
    lines: list[str] = []
    for row in rows:
        org = row["org_id"]
        where = f"{row['name'] or '(unnamed)'} ({org})" if org is not None else "(account tools)"
        status = str(row["status_code"] or "-")
        if row["outcome"] != "ok":
            status = f"{status} {row['outcome']}"
        took = "" if row["duration_ms"] is None else f"  {row['duration_ms']} ms"
        why = CAUSES.get(row["cause"] or "", row["cause"] or "?")
        lines.append(
            f"{rfc3339(row['at'])}  {where}  {row['method']} {row['path']}  {status}{took}  [{why}]"
        )
        ids = [f"agent {row['agent_id']}"] if row["agent_id"] else []
        ids += [f"vapi id {row['vapi_id']}"] if row["vapi_id"] else []
        if ids:
            lines.append("    " + ", ".join(ids))
        lines += [f"    {line}" for line in _change_lines(row)]
        if row.get("error"):
            lines.append(f"    error: {row['error']}")
    return "\n".join(lines)


def history_json(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "at": rfc3339(row["at"]),
            "org_id": None if row["org_id"] is None else str(row["org_id"]),
            "organization": row.get("name"),
            "agent_id": None if row["agent_id"] is None else str(row["agent_id"]),
            "action": row["action"],
            "method": row["method"],
            "path": row["path"],
            "vapi_id": row["vapi_id"],
            "cause": row["cause"],
            "changes": scrub(list(row["changes"])),
            "status": row["status_code"],
            "outcome": row["outcome"],
            "duration_ms": row["duration_ms"],
            "reconcile_id": row["reconcile_id"],
            "error": row.get("error"),
        }
        for row in rows
    ]


def _change_lines(row: Mapping[str, Any]) -> list[str]:
    changes = list(row["changes"])
    if row["method"] == "POST":  # a create: every field is new; its values are in --json
        names = ", ".join(str(c["path"]) for c in changes)
        return [f"set: {names}"] if names else []
    return [_change_line(change) for change in changes]


def _change_line(change: Mapping[str, Any]) -> str:
    path = str(change["path"])
    if "after" not in change:  # written before the audit held values
        return f"{path}: changed"
    before = show_value(scrub(change.get("before"), key=path))
    after = show_value(scrub(change.get("after"), key=path))
    if len(before) + len(after) > 2 * SHORT or "\n" in before + after:
        return f"{path}: changed (values in --json)"
    return f"{path}: {before} -> {after}"
