"""The simulator's account: assistants, tools and phone numbers as Vapi stores and returns them.

Phone numbers enter only through ``seed_phone_number`` (a test door: the controller never
creates one); everything else changes through the HTTP surface or ``edit_behind_the_back``.
Must not validate: ``validation`` decides what a request may change, this module stores it.
"""

from __future__ import annotations

import copy
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from controller.simulator.faults import Faults

Resource = Literal["assistant", "tool", "phone-number"]
RESOURCES: tuple[Resource, ...] = ("assistant", "tool", "phone-number")
PHONE_NUMBER_PROVIDERS = ("vapi", "twilio", "vonage", "telnyx", "byo-phone-number")
FILTERS = (
    "createdAtGt",
    "createdAtLt",
    "createdAtGe",
    "createdAtLe",
    "updatedAtGt",
    "updatedAtLt",
    "updatedAtGe",
    "updatedAtLe",
)
DEFAULT_SERVER_MESSAGES = [
    "conversation-update",
    "end-of-call-report",
    "function-call",
    "hang",
    "speech-update",
    "status-update",
    "tool-calls",
    "transfer-destination-request",
    "user-interrupted",
]


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Write:
    method: str
    resource: Resource
    vapi_id: str
    body: Mapping[str, Any]
    at: float = field(default_factory=time.time)
    """Wall-clock arrival, comparable across processes."""


@dataclass
class SimulatorState:
    account_key: str = "sim-key"
    org_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], datetime] = now_utc
    trim_first_message: bool = True
    """Quirk: Vapi may store a value differently from how it was sent; here trailing
    whitespace of ``firstMessage`` is dropped, so only a baseline avoids false drift."""
    fold_server_url: bool = False
    """Quirk, off by default: store an assistant's legacy top-level ``serverUrl`` as
    ``server.url`` (the spec no longer lists ``serverUrl``; whether Vapi keeps it as sent or
    moves it is unverified, so tests can take either answer)."""
    objects: dict[Resource, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {resource: {} for resource in RESOURCES}
    )
    pinned: set[str] = field(default_factory=set)
    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    arrivals: list[float] = field(default_factory=list)
    """``time.monotonic()`` of every request received, for rate checks."""
    writes: list[Write] = field(default_factory=list)
    credentials: Counter[str] = field(default_factory=Counter)
    """Authorization header values presented, valid or not: which keys a client used."""
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    # -- reads ---------------------------------------------------------------------------
    def list(self, resource: Resource, params: Mapping[str, str]) -> list[dict[str, Any]]:
        bounds = {name: parse_iso(params[name]) for name in FILTERS if name in params}
        items = [item for item in self.objects[resource].values() if _within(item, bounds)]
        items.sort(key=lambda i: (i["createdAt"], i["_seq"]), reverse=True)
        limit = int(params.get("limit", 100))
        cap = min(limit, self.faults.page_cap)
        return [self._public(resource, item, listing=True) for item in items[:cap]]

    def get(self, resource: Resource, vapi_id: str) -> dict[str, Any] | None:
        item = self.objects[resource].get(vapi_id)
        return self._public(resource, item, listing=False) if item else None

    # -- writes --------------------------------------------------------------------------
    def create(self, resource: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        stamp = iso(self.clock())
        item = {
            **copy.deepcopy(dict(body)),
            "id": str(uuid.uuid4()),
            "orgId": self.org_id,
            "createdAt": stamp,
            "updatedAt": stamp,
            "_seq": next(self._seq),
        }
        self._fill_defaults(resource, item)
        self.objects[resource][item["id"]] = item
        self.writes.append(Write("POST", resource, item["id"], copy.deepcopy(dict(body))))
        return self._public(resource, item, listing=False)

    def update(self, resource: Resource, vapi_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        item = self.objects[resource][vapi_id]
        item.update(copy.deepcopy(dict(body)))  # shallow: each key replaces its whole subtree
        item["updatedAt"] = iso(max(self.clock(), parse_iso(item["updatedAt"])))
        self._fill_defaults(resource, item)
        self.writes.append(Write("PATCH", resource, vapi_id, copy.deepcopy(dict(body))))
        return self._public(resource, item, listing=False)

    def delete(self, resource: Resource, vapi_id: str) -> dict[str, Any]:
        item = self.objects[resource].pop(vapi_id)
        self.writes.append(Write("DELETE", resource, vapi_id, {}))
        return self._public(resource, item, listing=False)

    def seed_phone_number(
        self,
        *,
        provider: str,
        number: str,
        assistant_id: str | None = None,
        name: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A number bought or imported outside the controller (test door, not a write the
        log records). ``fields`` adds or overrides stored keys, e.g. ``credentialId``;
        ``assistant_id`` is stored as given, even one naming no assistant."""
        if provider not in PHONE_NUMBER_PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PHONE_NUMBER_PROVIDERS)}")
        stamp = iso(self.clock())
        item: dict[str, Any] = {
            "provider": provider,
            "number": number,
            "status": "active",
            **_provider_credentials(provider),
            **({} if name is None else {"name": name}),
            **({} if assistant_id is None else {"assistantId": assistant_id}),
            **copy.deepcopy(fields),
            "id": str(uuid.uuid4()),
            "orgId": self.org_id,
            "createdAt": stamp,
            "updatedAt": stamp,
            "_seq": next(self._seq),
        }
        self.objects["phone-number"][item["id"]] = item
        return self._public("phone-number", item, listing=False)

    def edit_behind_the_back(
        self, resource: Resource, vapi_id: str, changes: Mapping[str, Any]
    ) -> None:
        """A dashboard edit: not counted among the controller's writes."""
        item = self.objects[resource][vapi_id]
        item.update(copy.deepcopy(dict(changes)))
        item["updatedAt"] = iso(self.clock())
        if resource != "phone-number":
            item["latestVersion"] = str(uuid.uuid4())

    # -- helpers -------------------------------------------------------------------------
    def _fill_defaults(self, resource: Resource, item: dict[str, Any]) -> None:
        if resource == "phone-number":
            return
        item["latestVersion"] = str(uuid.uuid4())
        if resource == "tool":
            if item.get("type") == "function":
                item.setdefault("async", False)
            item.setdefault("messages", [])
            return
        if self.fold_server_url and "serverUrl" in item:
            item["server"] = {**(item.get("server") or {}), "url": item.pop("serverUrl")}
        item.setdefault("firstMessageMode", "assistant-speaks-first")
        item.setdefault("backgroundSound", "office")
        item.setdefault("serverMessages", list(DEFAULT_SERVER_MESSAGES))
        item.setdefault("isServerUrlSecretSet", False)
        model = item.get("model")
        if isinstance(model, dict):
            model.setdefault("maxTokens", 250)
            model.setdefault("temperature", 0.5 if "toolIds" in model else 0)
            model.setdefault("emotionRecognitionEnabled", False)
        voice = item.get("voice")
        if isinstance(voice, dict):
            voice.setdefault("chunkPlan", {"enabled": True, "minCharacters": 30})
        first = item.get("firstMessage")
        if self.trim_first_message and isinstance(first, str):
            item["firstMessage"] = first.rstrip()

    def _public(
        self, resource: Resource, item: Mapping[str, Any], *, listing: bool
    ) -> dict[str, Any]:
        body = {k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("_")}
        if resource == "assistant" and not listing:
            # A single GET spells absent fields as null; a listing leaves them out.
            for key in ("firstMessage", "metadata", "voicemailMessage", "endCallMessage"):
                body.setdefault(key, None)
        return body


def _provider_credentials(provider: str) -> dict[str, str]:
    """What Vapi requires a stored number of ``provider`` to carry besides its number."""
    if provider == "twilio":
        return {"twilioAccountSid": "AC" + uuid.uuid4().hex}
    if provider == "vapi":
        return {}
    return {"credentialId": str(uuid.uuid4())}


def _within(item: Mapping[str, Any], bounds: Mapping[str, datetime]) -> bool:
    for name, bound in bounds.items():
        value = parse_iso(item["createdAt" if name.startswith("created") else "updatedAt"])
        op = name[-2:]
        if (op == "Gt" and not value > bound) or (op == "Lt" and not value < bound):
            return False
        if (op == "Ge" and not value >= bound) or (op == "Le" and not value <= bound):
            return False
    return True
