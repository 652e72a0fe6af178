"""Hostile answers from "Vapi": bounded time and memory, a clear error, no crash, and the
key never sent to another host. A real client over real loopback sockets."""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.secret import MasterKey
from controller.simulator import SimulatorState
from controller.vapi.client import MAX_BODY_BYTES, VapiClient
from controller.vapi.errors import MalformedResponseError, VapiError, VapiTimeoutError
from controller.vapi.ratelimit import RateLimiter
from desired_state.sample import seed_clinics
from tests.hostile_vapi import Answer, endless, hostile_server, respond
from tests.integration.helpers import assistant_of_agent, status_of

KEY = "sk-hostile-canary-3c9d1f0e"
TIMEOUT = 1.0
STAMP = "2026-01-01T00:00:00.000Z"

Call = Callable[[VapiClient], Awaitable[Any]]


def client_for(url: str) -> VapiClient:
    return VapiClient(
        base_url=url,
        key=MasterKey(KEY),
        limiter=RateLimiter(rate=1000, burst=100),
        timeout_seconds=TIMEOUT,
        max_attempts=2,
    )


def json_answer(value: Any, status: str = "200 OK") -> Answer:
    return respond(status, json.dumps(value).encode(), {"Content-Type": "application/json"})


async def list_assistants(client: VapiClient) -> Any:
    return await client.list_all("assistant")


async def get_assistant(client: VapiClient) -> Any:
    return await client.get("assistant", "a-1")


async def create_assistant(client: VapiClient) -> Any:
    return await client.create("assistant", {"name": "x"})


async def outcome_of(answer: Answer, call: Call) -> tuple[BaseException | None, float]:
    async with hostile_server(answer) as server:
        client = client_for(server.url)
        started = time.monotonic()
        try:
            await call(client)
        except Exception as exc:
            return exc, time.monotonic() - started
        finally:
            await client.aclose()
    return None, time.monotonic() - started


NESTED = b"[" * 200_000 + b"]" * 200_000


@pytest.mark.parametrize(
    ("answer", "call", "message"),
    [
        (respond("200 OK", b'{"id": "a-1", "name": '), get_assistant, "not JSON"),
        (respond("200 OK", b"\xff\xfe garbage"), get_assistant, "not JSON"),
        (respond("200 OK", NESTED), get_assistant, "not JSON"),
        (json_answer({"data": []}), list_assistants, "expected a JSON array"),
        (json_answer([{"id": "a-1"}]), list_assistants, "expected a JSON array"),
        (json_answer(["a-1", "a-2"]), list_assistants, "expected a JSON array"),
        (json_answer([{"id": "a-1", "createdAt": "yesterday"}]), list_assistants, "createdAt"),
        (json_answer({"id": "a-1", "updatedAt": "soon"}), get_assistant, "updatedAt"),
        (json_answer([{"id": None, "createdAt": STAMP}]), list_assistants, "expected a JSON array"),
        (
            json_answer([{"id": "../tool/t-1", "createdAt": STAMP}]),
            list_assistants,
            "expected a JSON array",
        ),
        (json_answer([]), create_assistant, "expected a JSON object with an id"),
        (json_answer({"id": {"nested": 1}}), get_assistant, "expected a JSON object with an id"),
        (json_answer("a-1"), get_assistant, "expected a JSON object with an id"),
    ],
)
async def test_malformed_answers_are_a_clear_error(
    answer: Answer, call: Call, message: str
) -> None:
    error, _ = await outcome_of(answer, call)
    assert isinstance(error, MalformedResponseError), repr(error)
    assert message in str(error)
    assert KEY not in str(error)


async def test_unexpected_fields_and_mixed_timestamps_are_accepted() -> None:
    page = [
        {"id": "a-1", "createdAt": STAMP, "surprise": {"deep": [1, 2]}, "metadata": ["x"]},
        {"id": "a-2", "createdAt": "2025-06-01T00:00:00", "model": "not-an-object"},
    ]
    pages = iter([page, page])

    async def answer(writer: Any) -> None:
        await json_answer(next(pages, []))(writer)

    error, _ = await outcome_of(answer, list_assistants)
    assert error is None


@pytest.mark.parametrize("compressed", [False, True])
async def test_a_body_of_many_megabytes_is_cut_off_at_the_cap(compressed: bool) -> None:
    if compressed:  # 64 MiB of zeros in 64 KiB: the cap counts decoded bytes
        bomb = gzip.compress(b"0" * (64 * 1024 * 1024))
        answer = respond("200 OK", bomb, {"Content-Encoding": "gzip"})
    else:
        answer = endless(b"[" + b"0," * 32_768)
    tracemalloc.start()
    try:
        error, seconds = await outcome_of(answer, get_assistant)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(error, MalformedResponseError)
    assert f"larger than {MAX_BODY_BYTES} bytes" in str(error)
    assert peak < 4 * MAX_BODY_BYTES
    assert seconds < TIMEOUT * 5


async def test_a_server_that_trickles_bytes_times_out_within_the_deadline() -> None:
    error, seconds = await outcome_of(endless(b" ", pause=0.05), get_assistant)
    assert isinstance(error, VapiTimeoutError)
    assert "no answer within" in str(error)
    assert seconds < TIMEOUT * 2 * 2 + 1  # two attempts, each cut at the deadline, plus backoff


async def test_a_post_that_trickles_is_an_unknown_outcome_never_retried() -> None:
    async with hostile_server(endless(b" ", pause=0.05)) as server:
        client = client_for(server.url)
        with pytest.raises(VapiError, match="outcome unknown"):
            await create_assistant(client)
        await client.aclose()
    assert len(server.heads) == 1


@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect"])
async def test_a_redirect_to_another_host_is_not_followed_and_the_key_stays_home(
    status: str,
) -> None:
    async with hostile_server(json_answer({"id": "a-1"})) as elsewhere:
        redirect = respond(status, b"", {"Location": f"{elsewhere.url}/assistant/a-1"})
        error, _ = await outcome_of(redirect, get_assistant)
    assert isinstance(error, VapiError)
    assert status.split()[0] in str(error)
    assert elsewhere.heads == []
    assert KEY not in str(error)


async def test_an_error_body_echoing_the_key_never_carries_it_out() -> None:
    from controller.secret import redact, register_secret

    register_secret(MasterKey(KEY))
    echo = json_answer({"message": f"Invalid key Bearer {KEY}"}, status="400 Bad Request")
    error, _ = await outcome_of(echo, get_assistant)
    assert isinstance(error, VapiError)
    assert KEY not in redact(str(error))


async def test_wrong_types_inside_our_own_assistants_are_drift_not_a_crash(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> None:
    async with platform.begin() as conn:
        clinic, bystander = await seed_clinics(conn, 2)
    await reconcile_pass(runtime)
    mangled = assistant_of_agent(sim, clinic.agent_ids[0])["id"]
    sim.objects["assistant"][mangled].update(
        {"name": 12345, "model": "not-an-object", "voice": ["a", "list"], "firstMessage": {}}
    )
    sim.objects["assistant"][mangled]["metadata"]["agent_id"] = {"forged": True}
    sim.writes.clear()

    outcome = await reconcile_pass(runtime)
    again = await reconcile_pass(runtime)

    assert (await status_of(runtime, bystander.org_id))["state"] == "synced"
    assert (await status_of(runtime, clinic.org_id))["state"] == "synced"
    assert outcome.converged
    assert again.converged
    healed = sim.objects["assistant"][mangled]
    assert isinstance(healed["model"], dict)
    assert healed["metadata"]["agent_id"] == str(clinic.agent_ids[0])
    assert [w.method for w in sim.writes] == ["PATCH"]
