"""Per-organization Vapi keys in ``integrations`` are never used and reported once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from loguru import logger
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState
from desired_state.findings import credential_paths, load_findings
from desired_state.sample import seed_clinics
from desired_state.tables import integrations
from tests.conftest import TEST_KEY

PER_ORG_KEY = "org-vapi-key-5f0c1e77-never-use-me"


@pytest.mark.parametrize(
    ("provider", "config", "expected"),
    [
        ("vapi", {"api_key": PER_ORG_KEY, "assistant_name": "front desk"}, ["api_key"]),
        ("calendar", {"vapi_api_key": PER_ORG_KEY, "calendar_id": "x"}, ["vapi_api_key"]),
        ("crm", {"vapiSecretKey": PER_ORG_KEY}, ["vapiSecretKey"]),
        ("crm", {"vapi": {"private_key": PER_ORG_KEY, "region": "us"}}, ["vapi.private_key"]),
        ("Vapi", {"accounts": [{"token": PER_ORG_KEY}]}, ["accounts[0].token"]),
        ("vapi", {"api_key": ""}, []),
        ("google", {"api_key": PER_ORG_KEY, "vapi_phone_number": "+1"}, []),
    ],
)
def test_credential_paths_name_where_a_vapi_key_sits(
    provider: str, config: dict[str, Any], expected: list[str]
) -> None:
    found = list(credential_paths(config, vapi_provider="vapi" in provider.lower()))
    assert found == expected


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink)


async def _add_integration(platform: AsyncEngine, org_id: UUID, provider: str, config: Any) -> None:
    async with platform.begin() as conn:
        await conn.execute(
            insert(integrations).values(org_id=org_id, provider=provider, config=config)
        )


async def test_a_per_org_key_is_reported_once_never_printed_never_used(
    platform: AsyncEngine, runtime: Runtime, sim: SimulatorState, log_lines: list[str]
) -> None:
    async with platform.begin() as conn:
        clinic, other = await seed_clinics(conn, 2)
    await _add_integration(platform, clinic.org_id, "vapi", {"vapi_api_key": PER_ORG_KEY})
    await _add_integration(platform, other.org_id, "calendar", {"calendar_id": "primary"})

    first = await reconcile_pass(runtime)
    second = await reconcile_pass(runtime)

    assert first.converged
    assert second.converged
    reports = [line for line in log_lines if "security finding" in line]
    assert len(reports) == 1
    assert "integrations[vapi].config.vapi_api_key" in reports[0]
    assert all(PER_ORG_KEY not in line for line in log_lines)
    assert set(sim.credentials) == {f"Bearer {TEST_KEY}"}
    assert all(PER_ORG_KEY not in json.dumps(w.body) for w in sim.writes)
    async with runtime.engine.connect() as conn:
        findings = await load_findings(conn)
    assert [(f.org_id, f.location) for f in findings] == [
        (clinic.org_id, "integrations[vapi].config.vapi_api_key")
    ]


async def test_a_removed_key_is_forgotten_and_a_new_one_reported_again(
    platform: AsyncEngine, runtime: Runtime, log_lines: list[str]
) -> None:
    async with platform.begin() as conn:
        clinic = (await seed_clinics(conn, 1))[0]
    await _add_integration(platform, clinic.org_id, "vapi", {"api_key": PER_ORG_KEY})
    await reconcile_pass(runtime)
    async with platform.begin() as conn:
        await conn.execute(delete(integrations))
    await reconcile_pass(runtime)
    async with runtime.engine.connect() as conn:
        assert await load_findings(conn) == []

    await _add_integration(platform, clinic.org_id, "vapi", {"api_key": PER_ORG_KEY})
    await reconcile_pass(runtime)

    assert len([line for line in log_lines if "security finding" in line]) == 2
