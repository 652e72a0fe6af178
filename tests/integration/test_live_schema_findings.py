"""Security findings on the live schema: a Vapi key in an ``integrations`` row without an
organization is recorded and stops nothing; a public key is not a secret."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.reconcile.full_pass import reconcile_pass
from controller.reconcile.runtime import Runtime
from desired_state.findings import NO_ORG, credential_paths, load_findings
from desired_state.sample import seed_clinics

PER_ORG_KEY = "org-vapi-key-0b1d-never-use-me"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"vapi_public_key": "pk-1", "vapi_private_key": PER_ORG_KEY}, ["vapi_private_key"]),
        ({"publicKey": "pk-1", "assistant": "front desk"}, []),
        ({"public_secret": PER_ORG_KEY}, ["public_secret"]),
    ],
)
def test_a_public_key_is_not_a_credential_but_a_secret_beside_it_is(
    config: dict[str, Any], expected: list[str]
) -> None:
    assert list(credential_paths(config, vapi_provider=True)) == expected


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    yield lines
    logger.remove(sink)


@pytest.mark.both_schemas
async def test_a_vapi_key_in_an_integration_without_an_organization_is_recorded_and_stops_nothing(
    platform: AsyncEngine, runtime: Runtime, platform_schema: str, warnings: list[str]
) -> None:
    async with platform.begin() as conn:
        (clinic,) = await seed_clinics(conn, 1)
        if platform_schema == "contract":  # the contract's org_id is NOT NULL
            await conn.execute(text("alter table integrations alter column org_id drop not null"))
        row = await conn.execute(
            text(
                "insert into integrations (org_id, provider, config) "
                "values (null, 'vapi', cast(:config as jsonb)) returning id"
            ),
            {"config": f'{{"api_key": "{PER_ORG_KEY}", "vapi_public_key": "pk-1"}}'},
        )
        row_id = row.scalar_one()

    first = await reconcile_pass(runtime)
    second = await reconcile_pass(runtime)

    assert first.converged
    assert second.converged
    async with runtime.engine.connect() as conn:
        findings = await load_findings(conn)
    assert [(f.org_id, f.location) for f in findings] == [
        (NO_ORG, f"integrations[vapi, id={row_id}].config.api_key")
    ]
    assert len([line for line in warnings if "security finding" in line]) == 1
    assert all(PER_ORG_KEY not in line for line in warnings)
    assert clinic.org_id not in {f.org_id for f in findings}
