"""Render ``status`` for people (a header and a table) and machines (JSON). Pure: the rows
and the overview come from ``desired_state.views``; nothing here reads or writes.

Observe-mode drift stays ``progressing`` in the data (CONTRACT section 5) but reads as
``drift (observe mode)``: nothing is in progress, the controller is only watching. Times are
RFC 3339 in UTC with ``Z``, in text and JSON alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.table import Table

from controller.config import Settings
from controller.report import rfc3339
from desired_state.findings import Finding
from desired_state.views import Overview

STATE_ORDER = {
    "failed": 0,
    "blocked": 1,
    "progressing": 2,
    "pending": 3,
    "paused": 4,
    "synced": 5,
}
OBSERVED_DRIFT = "drift (observe mode)"


def shown_state(row: Mapping[str, Any]) -> str:
    """The state as a person should read it."""
    if row["state"] == "progressing" and row.get("reason") == "observe_mode":
        return OBSERVED_DRIFT
    return str(row["state"])


def status_rows_sorted(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Unreconciled first (oldest incident first), then by state, then by name."""
    return sorted(
        rows,
        key=lambda r: (
            r["unreconciled_since"] is None,
            rfc3339(r["unreconciled_since"]) or "",
            STATE_ORDER.get(r["state"], 9),
            str(r.get("name") or ""),
            str(r["org_id"]),
        ),
    )


def status_header(overview: Overview, settings: Settings, *, config: str) -> list[str]:
    """What the controller is doing: the daemons (as they report themselves), this command's
    config, the last complete pass, open alerts."""
    controller = settings.controller
    lines = [f"status at {rfc3339(overview.now)}"]
    if overview.replicas:
        daemons = ", ".join(
            f"{r.replica_id} ({r.version or '?'}, {r.mode or '?'}{', paused' if r.paused else ''})"
            for r in overview.replicas
        )
        lines.append(f"daemons live: {len(overview.replicas)}: {daemons}")
    else:
        lines.append("daemons live: 0 (no `run` heartbeat within the lease)")
    paused_orgs = len(controller.paused_orgs)
    lines.append(
        f"this command's config ({config}): mode {controller.mode}, "
        f"{'paused' if controller.paused else 'not paused'}"
        + (f", {paused_orgs} organization(s) paused" if paused_orgs else "")
        + (", prune on" if controller.prune else "")
    )
    if overview.last_complete_pass is not None:
        lines.append(
            f"last complete pass: every organization has an outcome since "
            f"{rfc3339(overview.last_complete_pass)}"
        )
    else:
        lines.append("last complete pass: none yet (some organizations are pending)")
    lines.append(f"open alerts: {overview.open_alerts}")
    return lines


def status_table(rows: Sequence[Mapping[str, Any]], *, now: datetime) -> Table:
    """The rows as a table: state, age of the incident, reason, last sync, message."""
    table = Table(title=f"{len(rows)} organizations")
    table.add_column("organization", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("age", no_wrap=True)
    table.add_column("reason", no_wrap=True)
    table.add_column("last synced", no_wrap=True)
    table.add_column("message", overflow="fold")
    for row in rows:
        since = row["unreconciled_since"]
        table.add_row(
            str(row["org_id"]),
            str(row.get("name") or ""),
            shown_state(row),
            _age((now - since).total_seconds()) if since else "",
            row.get("reason") or "",
            rfc3339(row["last_synced_at"]) or "never",
            (row.get("message") or "")[:200],
        )
    return table


def status_json(
    rows: Sequence[Mapping[str, Any]], overview: Overview, settings: Settings
) -> dict[str, Any]:
    controller = settings.controller
    return {
        "at": rfc3339(overview.now),
        "controller": {
            "daemons": [
                {
                    "replica_id": r.replica_id,
                    "heartbeat_at": rfc3339(r.heartbeat_at),
                    "version": r.version,
                    "mode": r.mode,
                    "paused": r.paused,
                }
                for r in overview.replicas
            ],
            "config": {
                "mode": controller.mode,
                "paused": controller.paused,
                "paused_orgs": [str(org) for org in controller.paused_orgs],
                "prune": controller.prune,
            },
            "last_complete_pass": rfc3339(overview.last_complete_pass),
            "last_outcome": rfc3339(overview.last_outcome),
            "open_alerts": overview.open_alerts,
        },
        "organizations": [_row_json(row) for row in rows],
    }


def _row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "org_id": str(row["org_id"]),
        "name": row.get("name"),
        "desired": row.get("desired", True),
        "state": row["state"],
        "drift": shown_state(row) == OBSERVED_DRIFT,
        "reason": row.get("reason"),
        "message": row.get("message"),
        "last_synced_at": rfc3339(row["last_synced_at"]),
        "unreconciled_since": rfc3339(row["unreconciled_since"]),
        "updated_at": rfc3339(row.get("updated_at")),
        "consecutive_failures": row.get("consecutive_failures", 0),
        "security_findings": list(row.get("security_findings", [])),
    }


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
