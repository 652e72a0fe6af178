"""The simulator's phone numbers behave as Vapi's do (spec: ``/phone-number`` paths and the
``Update*PhoneNumberDTO`` schemas): bare-array listing, per-provider update bodies, binding and
unbinding an assistant, the fault layer and the write log. In-process, no Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from controller.simulator import ScriptedFault, SimulatorState
from tests.platform_account import simulator_client

START = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> SimulatorState:
    return SimulatorState(account_key="phone-key", clock=clock)


@pytest.fixture
async def client(sim: SimulatorState) -> AsyncIterator[httpx.AsyncClient]:
    async with simulator_client(sim) as opened:
        yield opened


async def an_assistant(client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/assistant", json={"name": "Front desk", "model": {"provider": "openai", "model": "gpt-4"}}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_listing_is_a_bare_array_newest_first_capped_and_filtered_by_created_at(
    sim: SimulatorState, client: httpx.AsyncClient, clock: Clock
) -> None:
    seeded = []
    for digit in range(4):
        seeded.append(sim.seed_phone_number(provider="vapi", number=f"+1555000000{digit}"))
        clock.advance(60)
    sim.faults.page_cap = 2

    page = (await client.get("/phone-number", params={"limit": 10})).json()
    older = (
        await client.get("/phone-number", params={"createdAtLe": seeded[1]["createdAt"]})
    ).json()

    assert [n["id"] for n in page] == [seeded[3]["id"], seeded[2]["id"]]
    assert [n["id"] for n in older] == [seeded[1]["id"], seeded[0]["id"]]


async def test_a_seeded_number_reads_back_as_stored_and_an_unknown_id_is_404(
    sim: SimulatorState, client: httpx.AsyncClient
) -> None:
    seeded = sim.seed_phone_number(provider="twilio", number="+15550001111", name="Main line")

    found = await client.get(f"/phone-number/{seeded['id']}")
    missing = await client.get("/phone-number/00000000-0000-4000-8000-000000000000")

    assert found.json() == seeded
    assert seeded["twilioAccountSid"].startswith("AC")
    assert seeded["orgId"] == sim.org_id
    assert missing.status_code == 404
    assert missing.json()["message"] == "Couldn't Find Phone Number"


async def test_seeding_is_a_test_door_not_a_write_and_refuses_an_unknown_provider(
    sim: SimulatorState,
) -> None:
    sim.seed_phone_number(provider="telnyx", number="+15550002222")

    with pytest.raises(ValueError, match="provider must be one of"):
        sim.seed_phone_number(provider="plivo", number="+15550003333")
    assert sim.writes == []


async def test_binding_an_assistant_updates_updated_at_and_is_logged_as_a_write(
    sim: SimulatorState, client: httpx.AsyncClient, clock: Clock
) -> None:
    assistant_id = await an_assistant(client)
    number = sim.seed_phone_number(provider="vapi", number="+15550004444")
    clock.advance(5)

    response = await client.patch(
        f"/phone-number/{number['id']}", json={"assistantId": assistant_id}
    )

    assert response.status_code == 200, response.text
    assert response.json()["assistantId"] == assistant_id
    assert response.json()["updatedAt"] > number["updatedAt"]
    assert response.json()["createdAt"] == number["createdAt"]
    last = sim.writes[-1]
    assert (last.method, last.resource, last.vapi_id) == ("PATCH", "phone-number", number["id"])
    assert last.body == {"assistantId": assistant_id}


async def test_assistant_id_null_unbinds_the_number(
    sim: SimulatorState, client: httpx.AsyncClient
) -> None:
    assistant_id = await an_assistant(client)
    number = sim.seed_phone_number(
        provider="vapi", number="+15550005555", assistant_id=assistant_id
    )

    response = await client.patch(f"/phone-number/{number['id']}", json={"assistantId": None})

    assert response.status_code == 200, response.text
    assert (await client.get(f"/phone-number/{number['id']}")).json()["assistantId"] is None


async def test_an_assistant_id_naming_no_assistant_is_a_400_that_changes_nothing(
    sim: SimulatorState, client: httpx.AsyncClient
) -> None:
    number = sim.seed_phone_number(provider="vapi", number="+15550006666")
    ghost = "11111111-1111-4111-8111-111111111111"

    response = await client.patch(f"/phone-number/{number['id']}", json={"assistantId": ghost})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Bad Request"
    assert body["statusCode"] == 400
    assert any(ghost in message for message in body["message"])
    assert (await client.get(f"/phone-number/{number['id']}")).json() == number
    assert sim.writes == []


@pytest.mark.parametrize(
    ("provider", "accepted", "foreign_key"),
    [
        ("vapi", {"name": "SIP", "sipUri": "sip:clinic@sip.vapi.ai"}, "number"),
        ("twilio", {"number": "+15550007777", "smsEnabled": False}, "credentialId"),
        ("vonage", {"number": "+15550007777", "credentialId": "cred-1"}, "smsEnabled"),
        ("telnyx", {"number": "+15550007777", "credentialId": "cred-1"}, "sipUri"),
        ("byo-phone-number", {"numberE164CheckEnabled": False}, "twilioAccountSid"),
    ],
)
async def test_each_provider_takes_its_own_update_dto_and_rejects_keys_it_does_not_list(
    sim: SimulatorState,
    client: httpx.AsyncClient,
    provider: str,
    accepted: dict[str, Any],
    foreign_key: str,
) -> None:
    number = sim.seed_phone_number(provider=provider, number="+15550008888")

    ok = await client.patch(
        f"/phone-number/{number['id']}", json={**accepted, "provider": provider}
    )
    rejected = await client.patch(f"/phone-number/{number['id']}", json={foreign_key: "x"})

    assert ok.status_code == 200, ok.text
    assert {k: ok.json()[k] for k in accepted} == accepted
    assert rejected.status_code == 400
    assert rejected.json()["message"] == [f"property {foreign_key} should not exist"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"provider": "twilio"}, "provider must be one of the following values: vapi"),
        ({"name": "x" * 41}, "name must be shorter than or equal to 40 characters"),
        ({"assistantId": 42}, "assistantId input should be a valid string"),
    ],
)
async def test_a_bad_update_is_a_class_validator_400(
    sim: SimulatorState, client: httpx.AsyncClient, body: dict[str, Any], problem: str
) -> None:
    number = sim.seed_phone_number(provider="vapi", number="+15550009999")

    response = await client.patch(f"/phone-number/{number['id']}", json=body)

    assert response.status_code == 400
    assert response.json()["message"] == [problem]


async def test_delete_answers_the_number_then_it_is_gone_and_the_delete_is_logged(
    sim: SimulatorState, client: httpx.AsyncClient
) -> None:
    number = sim.seed_phone_number(provider="vonage", number="+15550001234")

    deleted = await client.delete(f"/phone-number/{number['id']}")

    assert deleted.json() == number
    assert (await client.get(f"/phone-number/{number['id']}")).status_code == 404
    assert [(w.method, w.resource) for w in sim.writes] == [("DELETE", "phone-number")]


async def test_numbers_cannot_be_created_through_the_api(client: httpx.AsyncClient) -> None:
    response = await client.post("/phone-number", json={"provider": "vapi"})

    assert response.status_code == 405


@pytest.mark.parametrize(
    ("method", "route", "kind", "status"),
    [
        ("GET", "/phone-number", "429", 429),
        ("GET", "/phone-number/{id}", "503", 503),
        ("PATCH", "/phone-number/{id}", "500", 500),
        ("DELETE", "/phone-number/{id}", "400", 400),
    ],
)
async def test_scripted_faults_hit_the_phone_number_routes(
    sim: SimulatorState,
    client: httpx.AsyncClient,
    method: str,
    route: str,
    kind: Any,
    status: int,
) -> None:
    number = sim.seed_phone_number(provider="vapi", number="+15550004321")
    sim.faults.scripted = [ScriptedFault(kind=kind, method=method, route=route)]
    url = route.replace("{id}", number["id"])

    failed = await client.request(method, url, json={} if method == "PATCH" else None)
    retried = await client.request(method, url, json={} if method == "PATCH" else None)

    assert failed.status_code == status
    assert retried.status_code == 200
    assert sim.requests[(method, route, status)] == 1


async def test_a_dropped_patch_response_still_commits_the_binding(
    sim: SimulatorState, client: httpx.AsyncClient
) -> None:
    assistant_id = await an_assistant(client)
    number = sim.seed_phone_number(provider="vapi", number="+15550002468")
    sim.faults.scripted = [ScriptedFault(kind="drop", method="PATCH", route="/phone-number/{id}")]

    with pytest.raises(httpx.RemoteProtocolError):
        await client.patch(f"/phone-number/{number['id']}", json={"assistantId": assistant_id})

    assert sim.objects["phone-number"][number["id"]]["assistantId"] == assistant_id


async def test_a_wrong_key_is_refused_on_the_phone_number_routes(sim: SimulatorState) -> None:
    number = sim.seed_phone_number(provider="vapi", number="+15550001357")
    async with simulator_client(sim) as client:
        client.headers["Authorization"] = "Bearer wrong"
        response = await client.get(f"/phone-number/{number['id']}")

    assert response.status_code == 401


async def test_a_number_can_be_seeded_over_http_for_a_simulator_in_another_process(
    sim: SimulatorState, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/_sim/phone-numbers",
        json={"provider": "byo-phone-number", "number": "+15550003690", "credentialId": "c-1"},
    )
    refused = await client.post("/_sim/phone-numbers", json={"provider": "plivo", "number": "1"})

    assert response.status_code == 201
    assert sim.objects["phone-number"][response.json()["id"]]["credentialId"] == "c-1"
    assert refused.status_code == 400
