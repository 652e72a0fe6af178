"""Field ownership inside what the controller writes whole (in the spirit of Kubernetes
server-side apply): what it owns, and what it keeps of what it observed.

PATCH is shallow, so a changed ``model``, ``voice``, ``transcriber`` or ``server`` is sent
as a whole object. The controller owns the keys its render profile produces; every other key
of that object is kept as observed (a dashboard's ``voice.speed``, the platform's
``model.temperature`` under the voxanne profile), unless the object's ``provider`` changes
(provider-specific keys would be refused by Vapi). ``metadata`` keeps every key beside the
ownership tags. In ``model.toolIds`` the controller owns only the ids of the tools it
registers or adopts: every other id (a knowledge-base ``query`` tool, one added in the
dashboard) stays, in its place. A dashboard edit of an owned field is drift; of any other
field it is never drift and never overwritten. Must not do I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Container, Mapping, Sequence
from typing import Any

SHARED_OBJECTS = ("model", "voice", "transcriber", "server")
"""Top-level objects the controller sends whole, keeping what it does not own."""


class ToolOwnership:
    """Which ids of ``model.toolIds`` the controller owns: those of the tools it registers
    or adopts, and ids naming no tool that exists in Vapi (a deleted tool's dangling id,
    which would fail every call; removing it takes nothing from anyone)."""

    def __init__(self, owned: Collection[str], existing: Collection[str] | None) -> None:
        self.owned = frozenset(owned)
        self.existing = None if existing is None else frozenset(existing)

    def __contains__(self, tool_id: object) -> bool:
        if tool_id in self.owned:
            return True
        return self.existing is not None and tool_id not in self.existing


def owned_view(body: Mapping[str, Any], owned_tool_ids: Container[str]) -> dict[str, Any]:
    """``body`` as far as the controller owns it: ``model.toolIds`` cut down to its tools."""
    model = body.get("model")
    if not isinstance(model, Mapping) or not isinstance(model.get("toolIds"), list):
        return dict(body)
    owned = [i for i in model["toolIds"] if i in owned_tool_ids]
    return {**body, "model": {**model, "toolIds": owned}}


def compose(
    key: str,
    desired: Any,
    observed: Any,
    *,
    owned_tool_ids: Container[str],
) -> Any:
    """The value to send for top-level ``key``: the desired one, with what the controller
    does not own kept from the observed one."""
    if key not in SHARED_OBJECTS or not isinstance(desired, Mapping):
        return desired
    if not isinstance(observed, Mapping):
        return dict(desired)
    if "provider" in desired and observed.get("provider") != desired["provider"]:
        return dict(desired)
    merged = {**copy.deepcopy(dict(observed)), **desired}
    if key == "model" and "toolIds" in desired:
        merged["toolIds"] = merge_tool_ids(
            desired["toolIds"], observed.get("toolIds"), owned_tool_ids=owned_tool_ids
        )
    return merged


def merge_tool_ids(
    wanted: Sequence[str], observed: Any, *, owned_tool_ids: Container[str]
) -> list[str]:
    """Observed ids in their place, less the controller's that are no longer wanted, plus
    the wanted ones missing (appended, in order)."""
    current = [i for i in observed if isinstance(i, str)] if isinstance(observed, list) else []
    wanted_set = set(wanted)
    kept = [i for i in current if i not in owned_tool_ids or i in wanted_set]
    return kept + [i for i in wanted if i not in kept]
