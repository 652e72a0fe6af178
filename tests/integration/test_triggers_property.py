"""Property: installing the controller never makes a platform write fail (CONTRACT section 1).

The same random sequence of platform statements (organizations, agents with a NULL or a real
org_id, integrations, org_tools; as the owner, ``service_role`` and ``authenticated``) runs on
the live schema as it is and on the live schema after ``migrate`` and controller-role.sql:
each statement must succeed on both or fail on both, touching as many rows. Each example
runs in one transaction per database, every statement in a savepoint, and rolls back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from desired_state.embedded import scratch_database
from desired_state.engine import sync_engine
from tests.conftest import live_platform_sql, run_script

ORGS = [UUID(int=n) for n in range(1, 4)] + [None]
AGENTS = [UUID(int=n) for n in range(101, 105)]
ROLES = ["postgres", "service_role", "authenticated"]

Statement = tuple[str, str, tuple[Any, ...], UUID | None]
"""(role, SQL with psycopg placeholders, parameters, the organization a JWT names)."""

orgs = st.sampled_from(ORGS)
real_orgs = st.sampled_from(ORGS[:-1])
agents = st.sampled_from(AGENTS)
statuses = st.sampled_from(["active", "suspended"])


def statement(sql: str, *params: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, Any]]:
    return st.tuples(st.just(sql), st.tuples(*params))


statements = st.one_of(
    statement(
        "insert into organizations (id, name, email, status) values (%s, 'Clinic', %s, %s)",
        real_orgs,
        st.text("abc", min_size=1, max_size=3),
        statuses,
    ),
    statement("update organizations set status = %s where id = %s", statuses, real_orgs),
    statement("update organizations set id = %s where id = %s", real_orgs, real_orgs),
    statement("delete from organizations where id = %s", real_orgs),
    statement(
        "insert into agents (id, org_id, role, name, system_prompt, active) "
        "values (%s, %s, %s, 'Desk', 'Be kind', %s)",
        agents,
        orgs,
        st.sampled_from(["inbound", "outbound", None]),
        st.booleans(),
    ),
    statement("update agents set org_id = %s where id = %s", orgs, agents),
    statement("update agents set active = not active, name = 'New' where org_id = %s", orgs),
    statement("update agents set vapi_assistant_id = 'a-1' where org_id is null"),
    statement("update agents set is_active = false, model = 'gpt-4o'"),
    statement("delete from agents where id = %s", agents),
    statement("delete from agents where org_id is null or org_id = %s", orgs),
    statement(
        "insert into integrations (org_id, provider, config) values (%s, %s, %s)",
        orgs,
        st.sampled_from(["vapi", "calendar"]),
        st.just('{"vapi_public_key": "pk"}'),
    ),
    statement("update integrations set org_id = %s where org_id is null", orgs),
    statement("delete from integrations where org_id is not distinct from %s", orgs),
    statement(
        "insert into org_tools (org_id, tool_name, vapi_tool_id) values (%s, 'endCall', 't')", orgs
    ),
    statement("delete from org_tools where org_id = %s", orgs),
)
programs = st.lists(
    st.tuples(st.sampled_from(ROLES), statements, real_orgs), min_size=1, max_size=12
).map(lambda found: [(role, sql, params, org) for role, (sql, params), org in found])


def run(engine: Engine, program: list[Statement]) -> list[tuple[bool, int]]:
    """Each statement's (succeeded, rows touched), in one transaction rolled back at the end."""
    raw = engine.raw_connection()
    results: list[tuple[bool, int]] = []
    try:
        with raw.cursor() as cursor:
            for role, sql, params, org_id in program:
                claims = {"role": role, "app_metadata": {"org_id": str(org_id)}}
                cursor.execute("savepoint statement")
                cursor.execute(f"set local role {role}")
                cursor.execute(
                    "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
                )
                try:
                    cursor.execute(sql, params)
                except Exception:
                    cursor.execute("rollback to savepoint statement")
                    results.append((False, 0))
                else:
                    results.append((True, cursor.rowcount))
                    cursor.execute("release savepoint statement")
                    cursor.execute("reset role")
    finally:
        raw.rollback()
        raw.close()
    return results


@pytest.fixture
def unmigrated(pg_admin_url: str) -> Iterator[Engine]:
    """The live schema as the platform has it, before the controller is installed."""
    with scratch_database(pg_admin_url, prefix="vapi_reconciler_unmigrated") as url:
        engine = sync_engine(url)
        run_script(engine, live_platform_sql())
        yield engine
        engine.dispose()


@pytest.fixture
def migrated(database_url: str) -> Iterator[Engine]:
    engine = sync_engine(database_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("platform_schema", ["live"], indirect=True)
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs)
def test_every_platform_write_that_succeeds_before_migrate_succeeds_after_it(
    unmigrated: Engine, migrated: Engine, program: list[Statement]
) -> None:
    before = run(unmigrated, program)
    after = run(migrated, program)

    event(f"{sum(ok for ok, _ in before)} of {len(program)} statements succeed")
    assert after == before
