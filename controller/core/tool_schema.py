"""The JSON schema subset Vapi accepts for a function tool's ``parameters``.

Vapi validates ``function.parameters`` as ``OpenAIFunctionParameters`` (``type: object``,
``properties``, ``required``, no other key) whose properties are ``JsonSchema`` objects (a
``type`` each; ``items``, ``properties``, ``format``, ``enum``... typed as the spec says;
further keywords such as ``minimum`` or ``default`` pass, as the platform's own tools use
them). Checking the same here turns a definition Vapi would refuse into a clear error before
any write. Pure; bounded depth, so a hostile definition cannot recurse
without end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TYPES = ("string", "number", "integer", "boolean", "array", "object")
FORMATS = ("date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid")
TEXT_KEYS = ("description", "pattern", "title")
TOP_KEYS = frozenset({"type", "properties", "required"})
MAX_DEPTH = 16


def parameters_problem(parameters: Any) -> str | None:
    """Why Vapi would refuse ``parameters``, or None."""
    if not isinstance(parameters, Mapping) or parameters.get("type") != "object":
        return "parameters must be a JSON schema of type object"
    extra = sorted(str(k) for k in parameters if k not in TOP_KEYS)
    if extra:
        return f"parameters may only hold type, properties and required, not {', '.join(extra)}"
    if not isinstance(parameters.get("properties"), Mapping):
        return "parameters must have properties (an object; Vapi requires it)"
    return _strings(parameters, "required", "parameters") or _properties(
        parameters["properties"], "parameters", 1
    )


def _properties(properties: Mapping[Any, Any], path: str, depth: int) -> str | None:
    for name, node in properties.items():
        problem = _node(node, f"{path}.properties.{name}", depth)
        if problem:
            return problem
    return None


def _node(node: Any, path: str, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return f"{path}: nested deeper than {MAX_DEPTH} levels"
    if not isinstance(node, Mapping):
        return f"{path} must be an object"
    if node.get("type") not in TYPES:
        return f"{path}.type must be one of {', '.join(TYPES)}"
    if "format" in node and node["format"] not in FORMATS:
        return f"{path}.format must be one of {', '.join(FORMATS)}"
    for key in TEXT_KEYS:
        if key in node and not isinstance(node[key], str):
            return f"{path}.{key} must be a string"
    problem = _strings(node, "required", path) or _strings(node, "enum", path)
    if problem:
        return problem
    if "items" in node:
        problem = _node(node["items"], f"{path}.items", depth + 1)
        if problem:
            return problem
    if "properties" in node:
        if not isinstance(node["properties"], Mapping):
            return f"{path}.properties must be an object"
        return _properties(node["properties"], path, depth + 1)
    return None


def _strings(node: Mapping[Any, Any], key: str, path: str) -> str | None:
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"{path}.{key} must be a list of strings"
    return None
