"""Request-body checks, using Vapi's own published models (``vapi-server-sdk``) for types and
discriminated unions, plus what those models leave out: unknown keys, lengths, patterns,
ranges, required discriminators.

Beyond the spec it accepts only what a live account is known to hold because Vapi took it:
the platform's legacy assistant keys (top-level ``serverUrl``, the flat ``analysisPlan``
prompts) and ``function: {name}`` on query tools (Vapi's own docs send it; the spec omits
it). Must not loosen anything else: a body the spec rejects is a 400 here too.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from vapi.types import (
    CreateAssistantDto,
    CreateFunctionToolDto,
    CreateQueryToolDto,
    JsonSchema,
    OpenAiFunction,
    SuccessEvaluationPlanRubric,
    UpdateByoPhoneNumberDto,
    UpdateFunctionToolDto,
    UpdateQueryToolDto,
    UpdateTelnyxPhoneNumberDto,
    UpdateTwilioPhoneNumberDto,
    UpdateVapiPhoneNumberDto,
    UpdateVonagePhoneNumberDto,
)

NAME_MAX = 40
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
URL = re.compile(r"^https?://[^\s/]+")
TOOL_MODELS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "function": (CreateFunctionToolDto, UpdateFunctionToolDto),
    "query": (CreateQueryToolDto, UpdateQueryToolDto),
}
"""Tool ``type`` -> (create DTO, update DTO): the types this simulator serves."""
PHONE_NUMBER_MODELS: dict[str, type[BaseModel]] = {
    "vapi": UpdateVapiPhoneNumberDto,
    "twilio": UpdateTwilioPhoneNumberDto,
    "vonage": UpdateVonagePhoneNumberDto,
    "telnyx": UpdateTelnyxPhoneNumberDto,
    "byo-phone-number": UpdateByoPhoneNumberDto,
}
"""Phone-number ``provider`` -> its update DTO (the spec's ``Update*PhoneNumberDTO``)."""
RUBRICS: tuple[str, ...] = typing.get_args(typing.get_args(SuccessEvaluationPlanRubric)[0])
LEGACY_ANALYSIS_PROMPTS = ("summaryPrompt", "structuredDataPrompt", "successEvaluationPrompt")
LEGACY_ANALYSIS_KEYS = (*LEGACY_ANALYSIS_PROMPTS, "structuredDataSchema", "successEvaluationRubric")


def assistant_problems(body: Any, *, update: bool) -> list[str]:
    """On update, a partial ``model`` is accepted and replaces the whole subtree, as Vapi does:
    ``PATCH {"model": {"toolIds": [...]}}`` wipes the prompt and the provider."""
    if not isinstance(body, Mapping):
        return ["body must be an object"]
    current = {k: v for k, v in body.items() if k != "serverUrl"}
    problems = _legacy_server_url_problems(body)
    analysis = body.get("analysisPlan")
    if isinstance(analysis, Mapping):
        problems += _legacy_analysis_problems(analysis)
        current["analysisPlan"] = {
            k: v for k, v in analysis.items() if k not in LEGACY_ANALYSIS_KEYS
        }
    problems += _model_problems(CreateAssistantDto, current)
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


def tool_problems(body: Any, *, stored_type: str | None) -> list[str]:
    """``stored_type`` is None on create; on update, the type of the tool being patched (it
    picks the update DTO: ``type`` itself may not be sent)."""
    if not isinstance(body, Mapping):
        return ["body must be an object"]
    if stored_type is None:
        kind = body.get("type")
        if kind not in TOOL_MODELS:
            return [f"type must be one of the following values: {', '.join(TOOL_MODELS)}"]
        problems = []
        model = TOOL_MODELS[kind][0]
    elif stored_type not in TOOL_MODELS:
        return [f"tools of type {stored_type} are not served by this simulator"]
    else:
        kind = stored_type
        problems = ["property type should not exist"] if "type" in body else []
        model = TOOL_MODELS[kind][1]
    if kind == "query":
        # Vapi's docs create query tools with ``function: {name}``; the spec does not list it.
        problems += _model_problems(model, body, ignore={"type", "function"})
        if "function" in body:
            problems += _model_problems(OpenAiFunction, body["function"], prefix="function.")
    else:
        problems += _model_problems(model, body, ignore={"type"})
    function = body.get("function")
    if isinstance(function, Mapping):
        name = function.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            problems.append("function.name must match /^[a-zA-Z0-9_-]{1,64}$/")
    return problems


def phone_number_problems(
    body: Any, *, provider: str, assistant_exists: Callable[[str], bool]
) -> list[str]:
    """A PATCH of a number whose stored provider is ``provider``: the body is that provider's
    update DTO; ``provider`` may be repeated but not changed; ``assistantId`` must name an
    assistant of the account (null unbinds)."""
    if not isinstance(body, Mapping):
        return ["body must be an object"]
    problems = []
    if "provider" in body and body["provider"] != provider:
        problems.append(f"provider must be one of the following values: {provider}")
    problems += _model_problems(PHONE_NUMBER_MODELS[provider], body, ignore={"provider"})
    name = body.get("name")
    if isinstance(name, str) and len(name) > NAME_MAX:
        problems.append(f"name must be shorter than or equal to {NAME_MAX} characters")
    number = body.get("number")
    if provider == "byo-phone-number" and isinstance(number, str) and not 3 <= len(number) <= 40:
        problems.append("number must be longer than or equal to 3 and shorter than 40 characters")
    assistant_id = body.get("assistantId")
    if isinstance(assistant_id, str) and not assistant_exists(assistant_id):
        problems.append(f"assistantId {assistant_id} does not name an assistant of this org")
    return problems


def _legacy_server_url_problems(body: Mapping[str, Any]) -> list[str]:
    if "serverUrl" not in body:
        return []
    value = body["serverUrl"]
    if not isinstance(value, str) or not URL.match(value):
        return ["serverUrl must be a URL address"]
    return []


def _legacy_analysis_problems(analysis: Mapping[str, Any]) -> list[str]:
    """The flat ``analysisPlan`` keys Vapi listed before ``summaryPlan`` and friends (the
    platform still sends them on every assistant update)."""
    problems = [
        f"analysisPlan.{key} must be a string"
        for key in LEGACY_ANALYSIS_PROMPTS
        if key in analysis and not isinstance(analysis[key], str)
    ]
    if "structuredDataSchema" in analysis:
        problems += _model_problems(
            JsonSchema,
            analysis["structuredDataSchema"],
            prefix="analysisPlan.structuredDataSchema.",
        )
    rubric = analysis.get("successEvaluationRubric", RUBRICS[0])
    if rubric not in RUBRICS:
        problems.append(
            "analysisPlan.successEvaluationRubric must be one of the following values: "
            + ", ".join(RUBRICS)
        )
    return problems


def _model_problems(
    model: type[BaseModel],
    body: Any,
    *,
    ignore: frozenset[str] | set[str] = frozenset(),
    prefix: str = "",
) -> list[str]:
    if not isinstance(body, Mapping):
        return [f"{prefix.rstrip('.') or 'body'} must be an object"]
    try:
        parsed = model.model_validate({k: v for k, v in body.items() if k not in ignore})
    except ValidationError as exc:
        seen: dict[str, str] = {}
        for error in exc.errors():
            top = prefix + (str(error["loc"][0]) if error["loc"] else "body")
            seen.setdefault(top, f"{top} {error['msg'].lower()}")
        return list(seen.values())
    return _unknown(parsed, prefix)


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
