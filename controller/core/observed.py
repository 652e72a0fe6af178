"""Observed Vapi objects, wrapped read-only around the JSON Vapi returned."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

MANAGED_BY = "vapi-reconciler"
TOOL_ROUTE = "/api/vapi/tools"


@dataclass(frozen=True)
class Observed:
    """A Vapi object as returned: id, creation time and the raw body."""

    body: Mapping[str, Any]

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def created_at(self) -> str:
        return str(self.body.get("createdAt") or "")


@dataclass(frozen=True)
class ObservedAssistant(Observed):
    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @property
    def is_managed(self) -> bool:
        return self.metadata.get("managed_by") == MANAGED_BY

    @property
    def org_tag(self) -> UUID | None:
        return _uuid_or_none(self.metadata.get("org_id"))

    @property
    def agent_tag(self) -> UUID | None:
        return _uuid_or_none(self.metadata.get("agent_id"))

    @property
    def has_org_tag(self) -> bool:
        return self.metadata.get("org_id") is not None


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


def _uuid_or_none(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if value is not None else None
    except ValueError:
        return None
