"""Observed Vapi objects, wrapped read-only around the JSON Vapi returned, and
``ObservedState``, the indexed view a plan reads.

Everything read from Vapi passes ``shape_problem`` before any code uses it: an object whose
ownership cannot be read (``metadata`` that is a list, a tool's ``function`` that is a string)
is kept aside as unusable, with what is wrong, and never reaches a plan; every other field
is read through accessors that tolerate any type (``ObservedAssistant.tool_ids``).
Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal
from uuid import UUID

from controller.core.keys import TOOLS, WorkKey

Resource = Literal["assistant", "tool", "phone-number"]

MANAGED_BY = "vapi-reconciler"
TOOL_ROUTE = "/api/vapi/tools"


@dataclass(frozen=True)
class Observed:
    """A Vapi object as returned: id, creation time and the raw body. The body is never
    changed in place (a newer version is a new object), so what is read from it is kept."""

    body: Mapping[str, Any]

    @cached_property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def created_at(self) -> str:
        return str(self.body.get("createdAt") or "")


@dataclass(frozen=True)
class ObservedAssistant(Observed):
    @cached_property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @cached_property
    def is_managed(self) -> bool:
        return self.metadata.get("managed_by") == MANAGED_BY

    @cached_property
    def org_tag(self) -> UUID | None:
        return _uuid_or_none(self.metadata.get("org_id"))

    @cached_property
    def agent_tag(self) -> UUID | None:
        return _uuid_or_none(self.metadata.get("agent_id"))

    @cached_property
    def has_org_tag(self) -> bool:
        return self.metadata.get("org_id") is not None

    @property
    def tool_ids(self) -> tuple[str, ...]:
        model = self.body.get("model")
        ids = model.get("toolIds") if isinstance(model, Mapping) else None
        return tuple(ids) if isinstance(ids, list) else ()


@dataclass(frozen=True)
class ObservedTool(Observed):
    @property
    def function_name(self) -> str | None:
        function = self.body.get("function")
        return function.get("name") if isinstance(function, Mapping) else None

    @property
    def server_url(self) -> str | None:
        server = self.body.get("server")
        return server.get("url") if isinstance(server, Mapping) else None

    def is_ours(self, backend_url: str) -> bool:
        """Function tools carry no metadata: ours means our webhook route."""
        url = self.server_url or ""
        return self.body.get("type") == "function" and url.startswith(
            backend_url.rstrip("/") + TOOL_ROUTE + "/"
        )


@dataclass(frozen=True)
class ObservedPhoneNumber(Observed):
    """A number bought or imported into the account. It carries no metadata: the platform's
    rows are its only owner."""

    @property
    def assistant_id(self) -> str | None:
        value = self.body.get("assistantId")
        return value if isinstance(value, str) else None

    @property
    def label(self) -> str:
        return str(self.body.get("number") or self.body.get("name") or self.id)


def _uuid_or_none(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if value is not None else None
    except ValueError:
        return None


def shape_problem(resource: Resource, body: Mapping[str, Any]) -> str | None:
    """What makes ``body`` unusable, or None. Checked: the fields ownership is read from
    (an assistant's ``metadata``; a tool's ``type``, ``function.name`` and ``server.url``).
    Fields the controller writes whole (``model``, ``voice``, ``name``...) may hold anything:
    they are only compared, and a wrong type there is drift, healed by the next write."""
    if resource == "assistant":
        return _not_an_object(body, "metadata")
    if resource == "phone-number":
        bound = body.get("assistantId")
        return None if bound is None or isinstance(bound, str) else "assistantId is not a string"
    problem = _not_an_object(body, "function") or _not_an_object(body, "server")
    if problem:
        return problem
    for path, value in (
        ("type", body.get("type")),
        ("function.name", (body.get("function") or {}).get("name")),
        ("server.url", (body.get("server") or {}).get("url")),
    ):
        if value is not None and not isinstance(value, str):
            return f"{path} is a {type(value).__name__}, not a string"
    return None


def _not_an_object(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, Mapping):
        return None
    return f"{key} is a {type(value).__name__}, not an object"


@dataclass(frozen=True)
class Unusable:
    """An object Vapi returned that the controller cannot read safely."""

    resource: Resource
    vapi_id: str
    problem: str
    org_tag: UUID | None
    agent_tag: UUID | None


class ObservedState:
    """Vapi's assistants and tools, indexed by id and by the organization they are tagged for.
    Objects failing ``shape_problem`` are held apart in ``unusable``."""

    def __init__(
        self,
        assistants: Iterable[Mapping[str, Any]] = (),
        tools: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self._assistants: dict[str, ObservedAssistant] = {}
        self._tools: dict[str, ObservedTool] = {}
        self._by_org: dict[UUID, dict[str, ObservedAssistant]] = {}
        self._unusable: dict[str, Unusable] = {}
        self._numbers: dict[str, ObservedPhoneNumber] = {}
        self._numbers_by_assistant: dict[str, set[str]] = {}
        self._managed = 0
        self.version = 0
        """Moves on every change (``upsert``, ``remove``): what was derived from the state
        at one version holds while it has not moved."""
        self.listed = False
        """Filled by a complete listing (only then is absence meaningful)."""
        for body in assistants:
            self.upsert("assistant", body)
        for body in tools:
            self.upsert("tool", body)
            self.listed = True

    @property
    def assistants(self) -> tuple[ObservedAssistant, ...]:
        return tuple(self._assistants.values())

    @property
    def tools(self) -> tuple[ObservedTool, ...]:
        return tuple(self._tools.values())

    @property
    def unusable(self) -> Mapping[str, Unusable]:
        return self._unusable

    def assistant(self, vapi_id: str) -> ObservedAssistant | None:
        return self._assistants.get(vapi_id)

    def all(self, resource: Resource) -> tuple[Observed, ...]:
        return tuple(self._index(resource).values())

    def phone_number(self, vapi_id: str) -> ObservedPhoneNumber | None:
        return self._numbers.get(vapi_id)

    def numbers_routing_to(self, assistant_ids: Iterable[str]) -> list[ObservedPhoneNumber]:
        """Numbers bound to these assistants (indexed: no scan of every number)."""
        return [
            self._numbers[n]
            for vid in set(assistant_ids)
            for n in sorted(self._numbers_by_assistant.get(vid, ()))
        ]

    def get(self, resource: Resource, vapi_id: str) -> Observed | None:
        return self._index(resource).get(vapi_id)

    def _index(self, resource: Resource) -> Mapping[str, Observed]:
        if resource == "assistant":
            return self._assistants
        return self._tools if resource == "tool" else self._numbers

    def holds(self, resource: Resource, vapi_id: str) -> bool:
        """Known, usable or not: an unusable object exists and must never be re-created."""
        found = self._unusable.get(vapi_id)
        return self.get(resource, vapi_id) is not None or (
            found is not None and found.resource == resource
        )

    def upsert(self, resource: Resource, body: Mapping[str, Any]) -> set[WorkKey]:
        """Store ``body`` (or set it aside as unusable); returns the work keys it touched."""
        touched = self.remove(resource, str(body["id"]))
        self.version += 1
        problem = shape_problem(resource, body)
        if problem is not None:
            meta = body.get("metadata")
            tags = meta if isinstance(meta, Mapping) else {}
            unusable = Unusable(
                resource,
                str(body["id"]),
                problem,
                _uuid_or_none(tags.get("org_id")),
                _uuid_or_none(tags.get("agent_id")),
            )
            self._unusable[unusable.vapi_id] = unusable
            if unusable.org_tag is not None:
                touched.add(unusable.org_tag)
            return touched | ({TOOLS} if resource == "tool" else set())
        if resource == "phone-number":
            number = ObservedPhoneNumber(body)
            self._numbers[number.id] = number
            if number.assistant_id is not None:
                self._numbers_by_assistant.setdefault(number.assistant_id, set()).add(number.id)
            return touched | self._org_of(number.assistant_id)
        if resource == "tool":
            self._tools[str(body["id"])] = ObservedTool(body)
            return {TOOLS}
        new = ObservedAssistant(body)
        self._assistants[new.id] = new
        self._managed += new.is_managed
        if new.org_tag is not None:
            self._by_org.setdefault(new.org_tag, {})[new.id] = new
            touched.add(new.org_tag)
        return touched

    def remove(self, resource: Resource, vapi_id: str) -> set[WorkKey]:
        self.version += 1
        touched: set[WorkKey] = set()
        gone = self._unusable.pop(vapi_id, None)
        if gone is not None and gone.org_tag is not None:
            touched.add(gone.org_tag)
        if resource == "tool":
            return touched | ({TOOLS} if self._tools.pop(vapi_id, None) or gone else set())
        if resource == "phone-number":
            number = self._numbers.pop(vapi_id, None)
            if number is not None and number.assistant_id is not None:
                self._numbers_by_assistant.get(number.assistant_id, set()).discard(vapi_id)
            return touched | self._org_of(number.assistant_id if number else None)
        old = self._assistants.pop(vapi_id, None)
        if old is None:
            return touched
        self._managed -= old.is_managed
        if old.org_tag is not None:
            self._by_org.get(old.org_tag, {}).pop(vapi_id, None)
            touched.add(old.org_tag)
        return touched

    def _org_of(self, assistant_id: str | None) -> set[WorkKey]:
        """The organization a number's assistant is tagged for: whose reconcile it touches."""
        found = self._assistants.get(assistant_id or "")
        return {found.org_tag} if found is not None and found.org_tag is not None else set()

    def tagged_org_ids(self) -> set[UUID]:
        return {
            org for org, found in self._by_org.items() if any(a.is_managed for a in found.values())
        }

    def managed_count(self) -> int:
        """Managed assistants (tools are not counted: the prune bound is about assistants)."""
        return self._managed

    def tool_ids(self) -> frozenset[str] | None:
        """Every tool id held (usable or not), or None before any complete listing."""
        if not self.listed:
            return None
        unusable = (u.vapi_id for u in self._unusable.values() if u.resource == "tool")
        return frozenset(self._tools).union(unusable)

    def linked_tool_ids(self) -> set[str]:
        """Every tool id some assistant links (a tool still linked must not be deleted)."""
        return {tid for a in self._assistants.values() for tid in a.tool_ids}

    def for_org(self, org_id: UUID, named: Iterable[str | None]) -> Sequence[ObservedAssistant]:
        """Assistants tagged for the organization, plus those its agents name by id."""
        found = dict(self._by_org.get(org_id, {}))
        for vapi_id in named:
            assistant = self._assistants.get(vapi_id or "")
            if assistant is not None:
                found.setdefault(assistant.id, assistant)
        return list(found.values())

    def unusable_for_org(self, org_id: UUID, named: Iterable[str | None]) -> list[Unusable]:
        """Unusable assistants tagged for the organization or named by its agents."""
        ids = set(filter(None, named))
        return [
            u
            for u in self._unusable.values()
            if u.resource == "assistant" and (u.org_tag == org_id or u.vapi_id in ids)
        ]
