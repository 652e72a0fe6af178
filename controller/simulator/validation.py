"""Request-body checks, using Vapi's own published models (``vapi-server-sdk``) for types and
discriminated unions, plus what those models leave out: unknown keys, lengths, patterns,
ranges, required discriminators."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from vapi.types import CreateAssistantDto, CreateFunctionToolDto, UpdateFunctionToolDto

NAME_MAX = 40
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def assistant_problems(body: Any, *, update: bool) -> list[str]:
    """On update, a partial ``model`` is accepted and replaces the whole subtree, as Vapi does:
    ``PATCH {"model": {"toolIds": [...]}}`` wipes the prompt and the provider."""
    if not isinstance(body, Mapping):
        return ["body must be an object"]
    problems = _model_problems(CreateAssistantDto, body)
    name = body.get("name")
    if isinstance(name, str) and len(name) > NAME_MAX:
        problems.append(f"name must be shorter than or equal to {NAME_MAX} characters")
    model = body.get("model")
    if isinstance(model, Mapping):
        for key in () if update else ("provider", "model"):
            if not model.get(key):
                problems.append(f"model.{key} should not be empty")
        _check_range(problems, "model.temperature", model.get("temperature"), 0, 2)
        _check_range(problems, "model.maxTokens", model.get("maxTokens"), 50, 10000)
    voice = body.get("voice")
    if isinstance(voice, Mapping) and not voice.get("provider"):
        problems.append("voice.provider should not be empty")
    _check_range(problems, "maxDurationSeconds", body.get("maxDurationSeconds"), 10, 43200)
    return problems


def tool_problems(body: Any, *, update: bool) -> list[str]:
    if not isinstance(body, Mapping):
        return ["body must be an object"]
    if update:
        problems = ["property type should not exist"] if "type" in body else []
        problems += _model_problems(UpdateFunctionToolDto, body)
    else:
        if body.get("type") != "function":
            return ["type must be one of the supported tool types (this simulator: function)"]
        problems = _model_problems(CreateFunctionToolDto, body, ignore={"type"})
    function = body.get("function")
    if isinstance(function, Mapping):
        name = function.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            problems.append("function.name must match /^[a-zA-Z0-9_-]{1,64}$/")
    return problems


def _model_problems(
    model: type[BaseModel],
    body: Mapping[str, Any],
    *,
    ignore: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    try:
        parsed = model.model_validate({k: v for k, v in body.items() if k not in ignore})
    except ValidationError as exc:
        seen: dict[str, str] = {}
        for error in exc.errors():
            top = str(error["loc"][0]) if error["loc"] else "body"
            seen.setdefault(top, f"{top} {error['msg'].lower()}")
        return list(seen.values())
    return _unknown(parsed, "")


def _unknown(value: Any, prefix: str) -> list[str]:
    if isinstance(value, BaseModel):
        found = [f"property {prefix}{key} should not exist" for key in (value.model_extra or {})]
        for name, field in type(value).model_fields.items():
            found += _unknown(getattr(value, name), f"{prefix}{field.alias or name}.")
        return found
    if isinstance(value, list | tuple):
        return [
            problem for i, item in enumerate(value) for problem in _unknown(item, f"{prefix}{i}.")
        ]
    return []


def _check_range(problems: list[str], name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool) and not low <= value <= high:
        problems.append(f"{name} must be between {low} and {high}")
