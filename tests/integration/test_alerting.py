"""Alerting on real Postgres and a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.alerting.alerter import Alerter
from controller.alerting.payloads import signature
from controller.alerting.sinks import Sinks
from controller.config import AlertingSettings
from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import ScriptedFault, SimulatorState
from desired_state.sample import SampleOrg, seed_clinics
from desired_state.tables import agents
from tests.conftest import TEST_KEY
from tests.integration.helpers import status_of, with_controller
from tests.receiver import Receiver

SECRET = "webhook-secret-for-tests"
THRESHOLD = 1


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    listening = Receiver()
    yield listening
    listening.close()


def alerter(runtime: Runtime, receiver: Receiver, **changes: object) -> Alerter:
    settings = AlertingSettings.model_validate(
        {
            "unreconciled_after_seconds": THRESHOLD,
            "webhook_url": f"{receiver.url}/hook",
            "delivery_backoff_max_seconds": 1,
            **changes,
        }
    )
    sinks = Sinks.from_settings(settings, {"ALERT_WEBHOOK_SECRET": SECRET})
    return Alerter(runtime.engine, sinks, settings)


async def round_of(*alerters: Alerter) -> None:
    await asyncio.gather(*(a.evaluate() for a in alerters))
    await asyncio.gather(*(a.deliver() for a in alerters))


def reject_creates(sim: SimulatorState) -> None:
    sim.faults.scripted = [ScriptedFault("400", "POST", "/assistant", count=10_000)]


async def failing_past_threshold(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState
) -> SampleOrg:
    """One organization whose assistants Vapi rejects, unreconciled past the threshold."""
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    reject_creates(sim)
    await reconcile_pass(runtime)
    await asyncio.sleep(THRESHOLD + 0.1)
    return clinic


async def page_refused_once(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> Alerter:
    """An organization past the threshold whose page the receiver (down) refused once."""
    await failing_past_threshold(platform, runtime, sim)
    watcher = alerter(runtime, receiver)
    receiver.mode = "down"
    await round_of(watcher)
    assert watcher.sink_failures == 1
    return watcher


async def test_a_rejected_org_pages_once_after_the_threshold_and_resolves_once(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    reject_creates(sim)
    await reconcile_pass(runtime)
    status = await status_of(runtime, clinic.org_id)
    assert (status["state"], status["reason"]) == ("failed", "vapi_rejected")
    watcher = alerter(runtime, receiver)

    await round_of(watcher)
    assert receiver.events() == []
    await asyncio.sleep(THRESHOLD + 0.1)
    await round_of(watcher)
    await round_of(watcher)

    assert receiver.events() == ["firing"]
    page = receiver.received[0].body
    assert page["org_id"] == str(clinic.org_id)
    assert page["reason"] == "vapi_rejected"
    assert "injected" in page["last_error"]
    assert page["since"]

    sim.faults.scripted = []
    await reconcile_pass(runtime)
    await round_of(watcher)
    await round_of(watcher)
    assert receiver.events() == ["firing", "resolved"]


async def test_a_restart_or_a_second_replica_never_pages_twice(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> None:
    await failing_past_threshold(platform, runtime, sim)

    await round_of(alerter(runtime, receiver), alerter(runtime, receiver))
    restarted = alerter(runtime, receiver)
    await round_of(restarted)
    assert receiver.events() == ["firing"]

    sim.faults.scripted = []
    await reconcile_pass(runtime)
    await round_of(restarted, alerter(runtime, receiver))
    assert receiver.events() == ["firing", "resolved"]


async def test_a_paused_org_does_not_page(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    reject_creates(sim)
    await reconcile_pass(with_controller(runtime, paused_orgs=[clinic.org_id]))
    await asyncio.sleep(THRESHOLD + 0.1)

    await round_of(alerter(runtime, receiver))

    assert (await status_of(runtime, clinic.org_id))["state"] == "paused"
    assert receiver.events() == []


async def test_a_receiver_that_is_down_gets_the_alert_once_it_is_back(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> None:
    watcher = await page_refused_once(platform, runtime, sim, receiver)
    receiver.mode = "up"
    await asyncio.sleep(1.1)
    await round_of(watcher)

    assert receiver.events() == ["firing"]


async def test_a_page_still_unsent_when_its_incident_resolves_is_never_sent_after_it(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> None:
    """The page failed (receiver down) and waits in backoff; the organization converges
    meanwhile. The receiver must not get ``firing`` after ``resolved``: it would reopen."""
    watcher = await page_refused_once(platform, runtime, sim, receiver)
    receiver.mode = "up"
    sim.faults.scripted = []
    await reconcile_pass(runtime)
    await asyncio.sleep(1.1)  # the failed page is due again
    await round_of(watcher)
    await round_of(watcher)

    assert receiver.events() == ["resolved"]


async def test_the_webhook_signature_verifies_with_the_secret_and_not_another(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> None:
    await failing_past_threshold(platform, runtime, sim)

    await round_of(alerter(runtime, receiver))

    (page,) = receiver.received
    assert page.headers["X-Signature-256"] == signature(page.raw, SECRET)
    assert page.headers["X-Signature-256"] != signature(page.raw, "another-secret")
    assert TEST_KEY.encode() not in page.raw


async def test_alertmanager_gets_starts_and_ends_at(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> None:
    await failing_past_threshold(platform, runtime, sim)
    watcher = alerter(runtime, receiver, webhook_url="", alertmanager_url=receiver.url)

    await round_of(watcher)
    sim.faults.scripted = []
    await reconcile_pass(runtime)
    await round_of(watcher)

    firing, resolved = (r.body[0] for r in receiver.received if r.path == "/api/v2/alerts")
    assert firing["labels"]["alertname"] == "VapiReconcilerOrgUnreconciled"
    assert "endsAt" not in firing
    assert resolved["endsAt"] >= resolved["startsAt"]


async def test_chat_goes_through_apprise(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> None:
    clinic = await failing_past_threshold(platform, runtime, sim)
    settings = AlertingSettings(unreconciled_after_seconds=THRESHOLD)
    chat_url = receiver.url.replace("http://", "json://") + "/chat"
    watcher = Alerter(
        runtime.engine, Sinks.from_settings(settings, {"ALERT_CHAT_URLS": chat_url}), settings
    )

    await round_of(watcher)

    (message,) = [r.body for r in receiver.received if r.path == "/chat"]
    assert message["title"] == f"Unreconciled: organization {clinic.org_id} (vapi_rejected)"
    assert "injected" in message["message"]


async def test_a_forged_assistant_id_pages_at_once_with_ownership_conflict(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> None:
    async with platform.begin() as conn:
        victim, attacker = await seed_clinics(conn, 2)
    await reconcile_pass(runtime)
    stolen = next(
        a["id"]
        for a in sim.objects["assistant"].values()
        if a["metadata"]["org_id"] == str(victim.org_id)
    )
    async with platform.begin() as conn:
        await conn.execute(
            agents.update()
            .where(agents.c.id == attacker.agent_ids[0])
            .values(vapi_assistant_id=stolen, system_prompt="forged")
        )
    await reconcile_pass(runtime)

    await round_of(alerter(runtime, receiver, unreconciled_after_seconds=600))

    assert receiver.events() == ["firing"]
    page = receiver.received[0].body
    assert (page["org_id"], page["reason"]) == (str(attacker.org_id), "ownership_conflict")
    assert stolen in page["last_error"]


async def test_a_rollout_held_by_the_mass_update_guard_pages_at_once(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, receiver: Receiver
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 10)
    await reconcile_pass(runtime)
    moved = with_controller(runtime, max_update_percent=20, canary_percent=10)
    moved = Runtime(
        moved.engine,
        moved.client,
        moved.settings.model_copy(update={"backend_url": "https://elsewhere.test"}),
    )
    await reconcile_pass(moved)

    await round_of(alerter(runtime, receiver, unreconciled_after_seconds=600))

    reasons = {event.body["reason"] for event in receiver.received}
    assert receiver.events() == ["firing"] * 9
    assert reasons == {"mass_update_guard"}
