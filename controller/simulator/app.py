"""The simulator's HTTP surface: Vapi's assistant, tool and phone-number endpoints, plus
``/_sim/*`` controls for tests and benchmarks that run it in another process.

Every Vapi route passes through the same fault layer. Phone numbers have no POST: numbers are
bought or imported outside the controller, so tests seed them with
``SimulatorState.seed_phone_number``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from controller.simulator.faults import ScriptedFault
from controller.simulator.state import RESOURCES, Resource, SimulatorState
from controller.simulator.validation import (
    assistant_problems,
    phone_number_problems,
    tool_problems,
)

DropMode = Literal["raise", "cut"]
Handler = Callable[[Request, Resource], Awaitable[Response]]
NOT_FOUND = {"assistant": "Assistant", "tool": "Tool", "phone-number": "Phone Number"}
CREATED_THROUGH_API: tuple[Resource, ...] = ("assistant", "tool")


class ResponseDropped(Exception):
    """The write was committed and the connection is cut before any answer."""


def create_app(state: SimulatorState, *, drop_mode: DropMode = "cut") -> ASGIApp:
    def endpoint(handler: Handler, resource: Resource) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            return await _with_faults(state, request, resource, handler)

        return run

    routes = [
        route
        for resource in RESOURCES
        for route in (
            Route(
                f"/{resource}",
                endpoint(_collection(state), resource),
                methods=["GET", "POST"] if resource in CREATED_THROUGH_API else ["GET"],
            ),
            Route(
                f"/{resource}/{{vapi_id}}",
                endpoint(_item(state), resource),
                methods=["GET", "PATCH", "DELETE"],
            ),
        )
    ] + [
        Route("/_sim/faults", _set_faults(state), methods=["POST"]),
        Route("/_sim/stats", _stats(state), methods=["GET"]),
        Route("/_sim/writes", _writes(state), methods=["GET"]),
        Route("/_sim/edits", _edit(state), methods=["POST"]),
        Route("/_sim/phone-numbers", _seed_phone_number(state), methods=["POST"]),
        Route("/_sim/objects/{resource}", _dashboard(state), methods=["GET", "POST"]),
        Route("/_sim/objects/{resource}/{vapi_id}", _dashboard(state), methods=["PATCH", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    return _DropMiddleware(app, drop_mode)


async def _with_faults(
    state: SimulatorState, request: Request, resource: Resource, handler: Handler
) -> Response:
    state.arrivals.append(time.monotonic())
    method = request.method
    route = f"/{resource}" + ("/{id}" if "vapi_id" in request.path_params else "")
    response = await _gate(state, request, method, route)
    if response is None:
        fault = state.faults.take_scripted(method, route)
        if fault is not None and fault.kind == "400":
            echo = request.headers.get("authorization", "") if state.faults.echo_credentials else ""
            response = _bad_request([f"injected: this request is rejected {echo}".rstrip()])
        elif fault is not None and fault.kind in ("429", "500", "503"):
            response = _error(int(fault.kind), "Injected fault")
        elif fault is None and state.faults.random_error():
            response = _error(503, "Service Unavailable")
        else:
            response = await handler(request, resource)
            if fault is not None and fault.kind == "timeout":
                await asyncio.sleep(state.faults.timeout_seconds)
            elif fault is not None and fault.kind == "drop":
                state.requests[(method, route, 0)] += 1
                raise ResponseDropped
    state.requests[(method, route, response.status_code)] += 1
    return response


async def _gate(
    state: SimulatorState, request: Request, method: str, route: str
) -> Response | None:
    presented = request.headers.get("authorization", "")
    state.credentials[presented] += 1
    if presented != f"Bearer {state.account_key}":
        return _error(
            401,
            "Invalid Key. Hot tip, you may be using the private key instead of "
            "the public key, or vice versa.",
        )
    if state.faults.latency_seconds:
        await asyncio.sleep(state.faults.latency_seconds)
    wait = state.faults.over_rate()
    if wait is not None:
        headers = {"Retry-After": f"{max(wait, 0.001):.3f}"} if state.faults.retry_after else {}
        return _error(429, "Rate limit exceeded", headers=headers)
    return None


def _collection(state: SimulatorState) -> Handler:
    async def handle(request: Request, resource: Resource) -> Response:
        if request.method == "GET":
            return JSONResponse(state.list(resource, dict(request.query_params)))
        body = await _json(request)
        problems = _problems(state, resource, body, stored=None)
        if problems:
            return _bad_request(problems)
        return JSONResponse(state.create(resource, body), status_code=201)

    return handle


def _item(state: SimulatorState) -> Handler:
    async def handle(request: Request, resource: Resource) -> Response:
        vapi_id = request.path_params["vapi_id"]
        stored = state.get(resource, vapi_id)
        if stored is None:
            return _error(404, f"Couldn't Find {NOT_FOUND[resource]}")
        if request.method == "GET":
            return JSONResponse(stored)
        if request.method == "DELETE":
            if vapi_id in state.pinned:
                return _error(409, f"{resource}_pinned")
            return JSONResponse(state.delete(resource, vapi_id))
        body = await _json(request)
        problems = _problems(state, resource, body, stored=stored)
        if problems:
            return _bad_request(problems)
        return JSONResponse(state.update(resource, vapi_id, body))

    return handle


def _set_faults(state: SimulatorState) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        body = await _json(request)
        for key, value in (body or {}).items():
            if key == "scripted":
                state.faults.scripted = [ScriptedFault(**fault) for fault in value]
            elif hasattr(state.faults, key) and not key.startswith("_"):
                setattr(state.faults, key, value)
            else:
                return _bad_request([f"property {key} should not exist"])
        return JSONResponse(
            {k: v for k, v in asdict(state.faults).items() if not k.startswith("_")}
        )

    return handle


def _edit(state: SimulatorState) -> Callable[[Request], Awaitable[Response]]:
    """Dashboard edits behind the controller's back: ``{"resource", "count", "changes"}``
    applies ``changes`` to ``count`` objects picked at random; answers their ids."""

    async def handle(request: Request) -> Response:
        body = await _json(request)
        resource = body.get("resource") if isinstance(body, dict) else None
        if resource not in RESOURCES or not isinstance(body.get("changes"), dict):
            return _bad_request(
                [f"resource must be one of {', '.join(RESOURCES)}; changes an object"]
            )
        ids = sorted(state.objects[resource])
        picked = random.Random(body.get("seed", 0)).sample(ids, min(int(body["count"]), len(ids)))
        for vapi_id in picked:
            state.edit_behind_the_back(resource, vapi_id, body["changes"])
        return JSONResponse(picked)

    return handle


def _seed_phone_number(state: SimulatorState) -> Callable[[Request], Awaitable[Response]]:
    """``SimulatorState.seed_phone_number`` for a simulator in another process:
    ``{"provider", "number", "assistantId"?, "name"?, ...stored fields}``; answers the number."""

    async def handle(request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body, dict) or not {"provider", "number"} <= body.keys():
            return _bad_request(["provider and number are required"])
        fields = dict(body)
        try:
            seeded = state.seed_phone_number(
                provider=fields.pop("provider"),
                number=fields.pop("number"),
                assistant_id=fields.pop("assistantId", None),
                name=fields.pop("name", None),
                **fields,
            )
        except ValueError as exc:
            return _bad_request([str(exc)])
        return JSONResponse(seeded, status_code=201)

    return handle


def _dashboard(state: SimulatorState) -> Callable[[Request], Awaitable[Response]]:
    """The dashboard, for fault campaigns: ``GET`` every object as stored (no paging, no
    faults), ``POST`` an object of any shape (unvalidated: hostile shapes), ``PATCH`` one
    object's fields, ``DELETE`` one object. None of these is recorded among the writes."""

    async def handle(request: Request) -> Response:
        resource = request.path_params["resource"]
        if resource not in ("assistant", "tool"):
            return _error(404, "resource must be assistant or tool")
        vapi_id = request.path_params.get("vapi_id")
        if request.method == "GET":
            return JSONResponse([state.get(resource, i) for i in sorted(state.objects[resource])])
        body = await _json(request)
        if vapi_id is not None and vapi_id not in state.objects[resource]:
            return _error(404, f"Couldn't Find {resource.capitalize()}")
        if request.method == "DELETE" and vapi_id is not None:
            del state.objects[resource][vapi_id]
            return JSONResponse({"id": vapi_id})
        if not isinstance(body, dict):
            return _bad_request(["body must be an object"])
        if vapi_id is not None:
            state.edit_behind_the_back(resource, vapi_id, body)
            return JSONResponse(state.get(resource, vapi_id))
        recorded = len(state.writes)
        made = state.create(resource, body)
        del state.writes[recorded:]  # made in the dashboard, not by a client of the API
        return JSONResponse(made, status_code=201)

    return handle


def _stats(state: SimulatorState) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return JSONResponse(
            {
                "requests": [
                    {"method": m, "route": r, "status": s, "count": c}
                    for (m, r, s), c in sorted(state.requests.items())
                ],
                "writes": len(state.writes),
                "assistants": len(state.objects["assistant"]),
                "tools": len(state.objects["tool"]),
                "phoneNumbers": len(state.objects["phone-number"]),
            }
        )

    return handle


def _problems(
    state: SimulatorState, resource: Resource, body: Any, *, stored: dict[str, Any] | None
) -> list[str]:
    """``stored`` is the object a PATCH targets, None for a POST."""
    if resource == "assistant":
        return assistant_problems(body, update=stored is not None)
    if resource == "tool":
        return tool_problems(body, stored_type=None if stored is None else stored.get("type"))
    assert stored is not None, "phone numbers are never created through the API"
    return phone_number_problems(
        body,
        provider=stored["provider"],
        assistant_exists=lambda vapi_id: vapi_id in state.objects["assistant"],
    )


def _writes(state: SimulatorState) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return JSONResponse(
            [
                {
                    "method": w.method,
                    "resource": w.resource,
                    "vapi_id": w.vapi_id,
                    "at": w.at,
                    "body": w.body,
                }
                for w in state.writes
            ]
        )

    return handle


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
    names = {
        401: "Unauthorized",
        404: "Not Found",
        409: "Conflict",
        429: "Too Many Requests",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }
    return JSONResponse(
        {"message": message, "error": names.get(status, "Error"), "statusCode": status},
        status_code=status,
        headers=headers,
    )


def _bad_request(problems: list[str]) -> Response:
    return JSONResponse(
        {"message": problems, "error": "Bad Request", "statusCode": 400}, status_code=400
    )


class _DropMiddleware:
    """Turns ``ResponseDropped`` into what a client would see: in-process, an exception the
    transport maps to a disconnect; on a socket, a response cut off after its first bytes."""

    def __init__(self, app: Starlette, mode: DropMode) -> None:
        self.app = app
        self.mode = mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ResponseDropped:
            if self.mode == "raise":
                raise
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"4096")],
                }
            )
            await send({"type": "http.response.body", "body": b"{", "more_body": True})
