"""The Vapi client: four verbs per resource (observe by listing or get; create; update;
delete), rate-limited, with bounded retries for idempotent calls only.

A POST is never retried after it may have reached Vapi: it raises ``OutcomeUnknownError`` and
the reconcile re-observes. The transport is the seam: tests pass the simulator's.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from controller.core.observed import Resource
from controller.secret import MasterKey
from controller.vapi.body import ACCEPTED_ENCODINGS, BodyError, BoundedBody
from controller.vapi.errors import (
    BadRequestError,
    ConflictError,
    MalformedResponseError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    UnauthorizedError,
    VapiClientError,
    VapiConnectionError,
    VapiError,
    VapiServerError,
    VapiTimeoutError,
    WriteAbandonedError,
)
from controller.vapi.listing import Page, complete_listing, parse_instant
from controller.vapi.ratelimit import RateLimiter
from controller.vapi.transport import vapi_transport

SHARED_STRING_MAX = 64
"""Strings up to this length in Vapi's answers are interned (keys, providers, ids)."""

MAX_BODY_BYTES = 8 * 1024 * 1024
ID_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
BACKOFF_BASE = 0.25
BACKOFF_CAP = 30.0
WriteCheck = Callable[[], bool]
USER_AGENT = "vapi-reconciler"


class VapiClient:
    def __init__(
        self,
        *,
        base_url: str,
        key: MasterKey,
        limiter: RateLimiter,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_seconds: float = 15.0,
        max_attempts: int = 5,
        page_limit: int = 1000,
        observer: Callable[[str, str, str, float], None] | None = None,
    ) -> None:
        """``observer(method, route, status or error name, seconds)`` sees every attempt."""
        self._observer = observer
        self.limiter = limiter
        self._timeout = timeout_seconds
        self._max_attempts = max_attempts
        self.page_limit = page_limit
        self.calls: Counter[tuple[str, str, int | str]] = Counter()
        """(method, route, status or error name) -> count: what the pass cost."""
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        base = base_url.rstrip("/")
        self._base = base
        self._collections = {
            f"/{name}": httpx.URL(f"{base}/{name}")
            for name in ("assistant", "tool", "phone-number")
        }
        """The URL of each collection, parsed once: every create and listing asks for one."""
        self._headers = httpx.Headers(  # its repr masks the key
            {
                "Authorization": f"Bearer {key.reveal()}",
                "Accept": "application/json",
                "Accept-Encoding": ACCEPTED_ENCODINGS,
                "User-Agent": USER_AGENT,
            }
        )
        self._json_headers = httpx.Headers({**self._headers, "Content-Type": "application/json"})
        self._extensions = {"timeout": httpx.Timeout(timeout_seconds).as_dict()}
        self._transport = transport or vapi_transport(limits)
        """Requests go to the transport as they are: nothing of ``httpx.AsyncClient`` is
        needed (no base-URL merging, auth flow, redirects or cookie jar), and skipping it
        saves about 0.4 ms of a write's CPU (issue 17)."""

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def list_all(
        self,
        resource: Resource,
        *,
        filters: Mapping[str, str] | None = None,
        short_page_ends: bool = False,
        on_page: Callable[[Page], None] | None = None,
    ) -> Page:
        return await complete_listing(
            lambda params: self._list_page(resource, params),
            limit=self.page_limit,
            filters=filters,
            short_page_ends=short_page_ends,
            on_page=on_page,
        )

    async def get(self, resource: Resource, vapi_id: str) -> dict[str, Any]:
        return _object(await self._call("GET", f"/{resource}/{vapi_id}"), "GET", resource)

    async def create(
        self, resource: Resource, body: Mapping[str, Any], *, may_write: WriteCheck | None = None
    ) -> dict[str, Any]:
        """``may_write`` is asked right before each attempt is sent (after any rate-limit
        wait): False abandons the write with ``WriteAbandonedError``."""
        answer = await self._call("POST", f"/{resource}", body=body, may_write=may_write)
        return _object(answer, "POST", resource)

    async def update(
        self,
        resource: Resource,
        vapi_id: str,
        body: Mapping[str, Any],
        *,
        may_write: WriteCheck | None = None,
    ) -> dict[str, Any]:
        path = f"/{resource}/{vapi_id}"
        answer = await self._call("PATCH", path, body=body, may_write=may_write)
        return _object(answer, "PATCH", path)

    async def delete(
        self, resource: Resource, vapi_id: str, *, may_write: WriteCheck | None = None
    ) -> None:
        path = f"/{resource}/{vapi_id}"
        try:
            await self._call("DELETE", path, may_write=may_write)
        except NotFoundError:
            return

    async def _list_page(self, resource: Resource, params: Mapping[str, str | int]) -> Page:
        page = await self._call("GET", f"/{resource}", params=params)
        if not isinstance(page, list) or not all(
            isinstance(item, dict) and _is_id(item.get("id")) and "createdAt" in item
            for item in page
        ):
            raise MalformedResponseError(
                f"GET /{resource}: expected a JSON array of objects with id and createdAt",
                method="GET",
                path=f"/{resource}",
            )
        for item in page:
            _check_stamps(item, "GET", f"/{resource}")
        return page

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
        may_write: WriteCheck | None = None,
    ) -> Any:
        route = _route(path)
        for attempt in range(1, self._max_attempts + 1):
            await self.limiter.acquire()
            if may_write is not None and not may_write():
                raise WriteAbandonedError(f"{method} {route}: not sent, the claim may have expired")
            started = time.monotonic()
            try:
                response = await self._send(method, path, params=params, body=body)
            except (VapiTimeoutError, VapiConnectionError) as exc:
                self._count(method, route, type(exc).__name__, started)
                if method == "POST" and not isinstance(exc, _NotSent):
                    raise OutcomeUnknownError(
                        f"{method} {route}: outcome unknown ({exc})", method=method, path=route
                    ) from None
                if attempt == self._max_attempts:
                    raise
                await asyncio.sleep(_backoff(attempt))
                continue
            self._count(method, route, response.status_code, started)
            if response.status_code == 429:
                retry_after = _retry_after(response)
                self.limiter.slow_down(retry_after or _backoff(attempt))
                if attempt == self._max_attempts:
                    raise RateLimitedError(
                        f"{method} {route}: 429 rate limited after {attempt} attempts",
                        method=method,
                        path=route,
                        retry_after=retry_after,
                    )
                continue
            if response.status_code >= 500:
                if method == "POST":
                    raise OutcomeUnknownError(
                        f"{method} {route}: {response.status_code}, outcome unknown",
                        method=method,
                        path=route,
                        status=response.status_code,
                    )
                if attempt == self._max_attempts:
                    raise VapiServerError(
                        f"{method} {route}: {response.status_code} after {attempt} attempts",
                        method=method,
                        path=route,
                        status=response.status_code,
                    )
                await asyncio.sleep(_backoff(attempt))
                continue
            return _decode(response, method, route)
        raise AssertionError("unreachable: the loop returns or raises")

    def _count(self, method: str, route: str, status: int | str, started: float) -> None:
        self.calls[(method, route, status)] += 1
        if self._observer is not None:
            self._observer(method, route, str(status), time.monotonic() - started)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None,
        body: Mapping[str, Any] | None,
    ) -> Answer:
        route = _route(path)
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._transport.handle_async_request(
                    self._request(method, path, params, body)
                )
                try:
                    content = BoundedBody(
                        response.headers.get("content-encoding", ""), limit=MAX_BODY_BYTES
                    )
                    async for chunk in response.aiter_raw():
                        content.feed(chunk)
                except BodyError as exc:
                    raise MalformedResponseError(
                        f"{method} {route}: {exc}", method=method, path=route
                    ) from None
                finally:
                    await response.aclose()
                return Answer(response.status_code, response.headers, content.finish())
        except (TimeoutError, httpx.TimeoutException):
            raise VapiTimeoutError(
                f"{method} {route}: no answer within {self._timeout:g}s", method=method, path=route
            ) from None
        except httpx.ConnectError as exc:
            raise _NotSent(
                f"{method} {route}: cannot connect ({type(exc).__name__})",
                method=method,
                path=route,
            ) from None
        except httpx.TransportError as exc:
            raise VapiConnectionError(
                f"{method} {route}: connection failed ({type(exc).__name__})",
                method=method,
                path=route,
            ) from None

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        body: Mapping[str, Any] | None,
    ) -> httpx.Request:
        """The request as ``httpx.AsyncClient`` would build it for this client: the key and
        accepted encodings, JSON as compact UTF-8 (NaN refused), the timeouts."""
        url = self._collections.get(path) or httpx.URL(self._base + path)
        if body is None:
            return httpx.Request(
                method, url, params=params, headers=self._headers, extensions=self._extensions
            )
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return httpx.Request(
            method,
            url,
            params=params,
            headers=self._json_headers,
            content=content.encode(),
            extensions=self._extensions,
        )


class _NotSent(VapiConnectionError):
    """The connection was never made: even a POST may be retried."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer read whole (within ``MAX_BODY_BYTES``, decompressed): what ``_call`` needs
    of it, without the cost of building a second ``httpx.Response`` for every request."""

    status_code: int
    headers: httpx.Headers
    content: bytes


def _shared_strings(value: Any) -> Any:
    """A copy whose keys and short strings are interned: thousands of cached bodies repeat
    the same keys, providers, voices and tool ids (a third of the memory at 20,000). Done as
    each answer arrives, so a listing of 100,000 never holds them all in full. ``value`` is
    decoded JSON: exact types are checked (an ABC's ``isinstance`` costs ten times more)."""
    kind = type(value)
    if kind is str:
        return sys.intern(value) if len(value) <= SHARED_STRING_MAX else value
    if kind is dict:
        return {sys.intern(k): _shared_strings(v) for k, v in value.items()}
    if kind is list:
        return [_shared_strings(v) for v in value]
    return value


def _decode(response: Answer, method: str, route: str) -> Any:
    status = response.status_code
    try:
        payload = json.loads(response.content) if response.content else None
    except (ValueError, RecursionError):
        payload = None
        if 200 <= status < 300:
            raise MalformedResponseError(
                f"{method} {route}: {status} with a body that is not JSON",
                method=method,
                path=route,
            ) from None
    if 200 <= status < 300:
        try:
            return _shared_strings(payload)
        except RecursionError:
            raise MalformedResponseError(
                f"{method} {route}: {status} with JSON nested too deeply",
                method=method,
                path=route,
            ) from None
    message = _message(payload) or httpx.codes.get_reason_phrase(status)
    if status == 400:
        raw = payload.get("message") if isinstance(payload, dict) else None
        messages = [str(m) for m in raw] if isinstance(raw, list) else [message]
        raise BadRequestError(messages, method=method, path=route)
    kinds: dict[int, type[VapiClientError]] = {
        401: UnauthorizedError,
        403: UnauthorizedError,
        404: NotFoundError,
        409: ConflictError,
    }
    error = kinds.get(status, VapiClientError)
    raise error(f"{method} {route}: {status} {message}", method=method, path=route, status=status)


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        raw = payload.get("message")
        if isinstance(raw, list):
            return "; ".join(str(m) for m in raw)
        if raw is not None:
            return str(raw)[:500]
    return ""


def _object(payload: Any, method: str, route: str) -> dict[str, Any]:
    if not isinstance(payload, dict) or not _is_id(payload.get("id")):
        raise MalformedResponseError(
            f"{method} {route}: expected a JSON object with an id", method=method, path=route
        )
    _check_stamps(payload, method, route)
    return payload


def _check_stamps(item: Mapping[str, Any], method: str, route: str) -> None:
    """``createdAt`` and ``updatedAt``, where present, are times: the cache orders by them."""
    for key in ("createdAt", "updatedAt"):
        if key in item:
            try:
                parse_instant(item[key])
            except MalformedResponseError as exc:
                raise MalformedResponseError(
                    f"{method} {route}: {key} {exc}", method=method, path=route
                ) from None


def _is_id(value: Any) -> bool:
    """Vapi ids are UUIDs; anything not id-shaped (a path such as ``../tool/x`` included,
    which would steer a later PATCH elsewhere) is a lie about the object."""
    return isinstance(value, str) and ID_SHAPE.fullmatch(value) is not None


def _route(path: str) -> str:
    """``/assistant/<id>`` -> ``/assistant/{id}``: bounded label values for metrics."""
    parts = path.strip("/").split("/")
    return "/" + parts[0] + ("/{id}" if len(parts) > 1 else "")


def _retry_after(response: Answer) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return min(max(float(value), 0.0), BACKOFF_CAP) if value is not None else None
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


__all__ = ["Resource", "VapiClient", "VapiError"]
