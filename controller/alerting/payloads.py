"""What each sink receives. Pure."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from desired_state.alerts import Delivery

ORG_ALERT = "VapiReconcilerOrgUnreconciled"
CONTROLLER_ALERT = "VapiReconcilerControllerDown"


def webhook_body(delivery: Delivery) -> dict[str, Any]:
    """CONTRACT section 4: at least ``status``, ``org_id``, ``reason`` and ``since``."""
    return {
        "id": delivery.alert_id,
        "status": delivery.event,
        "org_id": str(delivery.org_id) if delivery.org_id else None,
        "key": delivery.key,
        "reason": delivery.reason,
        "since": _iso(delivery.since),
        "fired_at": _iso(delivery.fired_at),
        "resolved_at": _iso(delivery.resolved_at) if delivery.resolved_at else None,
        "unreconciled_seconds": round(
            ((delivery.resolved_at or delivery.fired_at) - delivery.since).total_seconds()
        ),
        "last_error": delivery.message,
    }


def signature(body: bytes, secret: str) -> str:
    """``X-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode(body: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def alertmanager_body(delivery: Delivery) -> list[dict[str, Any]]:
    """Alertmanager v2 ``postableAlerts``: it groups, silences and routes from here."""
    labels = {
        "alertname": ORG_ALERT if delivery.org_id else CONTROLLER_ALERT,
        "service": "vapi-reconciler",
        "severity": "warning" if delivery.org_id else "critical",
        "reason": delivery.reason,
    }
    if delivery.org_id:
        labels["org_id"] = str(delivery.org_id)
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": chat_title(delivery), "description": delivery.message[:2000]},
        "startsAt": _iso(delivery.since),
    }
    if delivery.event == "resolved" and delivery.resolved_at:
        alert["endsAt"] = _iso(delivery.resolved_at)
    return [alert]


def chat_title(delivery: Delivery) -> str:
    who = f"organization {delivery.org_id}" if delivery.org_id else "the controller"
    if delivery.event == "resolved":
        return f"Resolved: {who} is reconciled again"
    return f"Unreconciled: {who} ({delivery.reason})"


def chat_text(delivery: Delivery) -> str:
    body = webhook_body(delivery)
    return (
        f"since {body['since']} ({body['unreconciled_seconds']}s); reason {delivery.reason}\n"
        f"{delivery.message[:1000]}"
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
