"""False drift is caught here: what Vapi adds or spells differently is not a change."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.desired import Baseline, fingerprint
from controller.core.drift import diff, drift, observed_hash

DESIRED: dict[str, Any] = {
    "name": "Clinic inbound",
    "model": {
        "provider": "openai",
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "Be kind."}],
        "toolIds": ["t1", "t2"],
        "temperature": 0.3,
        "maxTokens": 300,
    },
    "voice": {"provider": "vapi", "voiceId": "Paige"},
    "metadata": {"managed_by": "vapi-reconciler", "org_id": "o"},
}


def observed(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        **DESIRED,
        "id": "a1",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "latestVersion": "v9",
        "serverMessages": ["end-of-call-report"],
        "backgroundSound": "office",
        "firstMessage": None,
        "model": {**DESIRED["model"], "emotionRecognitionEnabled": False},
        "voice": {**DESIRED["voice"], "chunkPlan": {"enabled": True}},
        "metadata": {**DESIRED["metadata"], "crm": "x"},
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("label", "body"),
    [
        ("server-filled fields and defaults", observed()),
        ("toolIds in another order", observed(model={**DESIRED["model"], "toolIds": ["t2", "t1"]})),
        ("an int where a float was sent", observed(model={**DESIRED["model"], "maxTokens": 300.0})),
        ("metadata keys others added", observed(metadata={**DESIRED["metadata"], "a": 1})),
        (
            "extra keys inside messages",
            observed(
                model={
                    **DESIRED["model"],
                    "messages": [{"role": "system", "content": "Be kind.", "id": "m1"}],
                }
            ),
        ),
    ],
)
def test_what_vapi_adds_is_not_drift(label: str, body: dict[str, Any]) -> None:
    assert diff(DESIRED, body) == [], label


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (observed(name="Renamed"), "name"),
        (observed(model={**DESIRED["model"], "toolIds": ["t1"]}), "model.toolIds"),
        (observed(model={**DESIRED["model"], "temperature": 0.9}), "model.temperature"),
        (observed(voice={"provider": "vapi", "voiceId": "Rohan"}), "voice.voiceId"),
        (observed(metadata={"managed_by": "vapi-reconciler"}), "metadata.org_id"),
        (observed(model={**DESIRED["model"], "messages": []}), "model.messages"),
        ({k: v for k, v in observed().items() if k != "voice"}, "voice.provider"),
    ],
)
def test_a_changed_managed_field_is_drift_at_its_path(body: dict[str, Any], path: str) -> None:
    assert path in [change.path for change in diff(DESIRED, body)]


def test_a_value_vapi_stores_differently_is_in_sync_while_the_baseline_matches() -> None:
    sent = {**DESIRED, "firstMessage": "Hello!  "}
    stored = observed(firstMessage="Hello!")
    baseline = Baseline("a1", fingerprint(sent), observed_hash(sent, stored))

    assert diff(sent, stored)
    assert drift(sent, stored, baseline) == []


def test_an_edit_after_the_baseline_is_drift_again() -> None:
    sent = {**DESIRED, "firstMessage": "Hello!  "}
    stored = observed(firstMessage="Hello!")
    baseline = Baseline("a1", fingerprint(sent), observed_hash(sent, stored))

    assert drift(sent, observed(firstMessage="Edited"), baseline)


def test_a_desired_change_after_the_baseline_is_not_hidden_by_it() -> None:
    sent = {**DESIRED, "firstMessage": "Hello!  "}
    stored = observed(firstMessage="Hello!")
    baseline = Baseline("a1", fingerprint(sent), observed_hash(sent, stored))

    assert drift({**sent, "firstMessage": "Welcome!"}, stored, baseline)
