"""Shared fixtures: a real PostgreSQL and the Vapi simulator.

PostgreSQL is found in this order: ``TEST_DATABASE_URL`` or ``DATABASE_URL`` (an admin URL
on a server where the tests may create databases), testcontainers when a Docker engine
answers, else an embedded server from the ``pgserver`` wheel. Every test gets a fresh
database, copied from a migrated template made once per session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import Settings
from controller.reconcile.runtime import Runtime
from controller.runtime import open_runtime
from controller.secret import MasterKey
from controller.simulator import SimulatorState, SimulatorTransport
from desired_state.embedded import embedded_postgres, scratch_database
from desired_state.engine import async_engine, sync_engine
from desired_state.migrate import migrate

TEST_KEY = "test-master-key-0123456789"
BACKEND = "https://backend.test"
ROLE_SQL = Path(__file__).resolve().parents[1] / "deploy" / "postgres" / "controller-role.sql"
CONTROLLER_PASSWORD = "controller-role-test-password"


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with ExitStack() as stack:
        if _docker_answers():
            from testcontainers.postgres import PostgresContainer

            container = stack.enter_context(PostgresContainer("postgres:16-alpine", driver=None))
            yield container.get_connection_url()
            return
        data = tmp_path_factory.mktemp("pg")
        yield stack.enter_context(embedded_postgres(Path(data)))


@pytest.fixture(scope="session")
def controller_role(pg_admin_url: str) -> Iterator[str]:
    """The least-privilege role of ``deploy/postgres/controller-role.sql``, under a name of
    this session's own (roles are cluster-wide), dropped at the end."""
    name = f"vapi_reconciler_t{uuid.uuid4().hex[:8]}"
    yield name
    admin = sync_engine(pg_admin_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'drop role if exists "{name}"'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str, controller_role: str) -> Iterator[str]:
    """A migrated database (platform tables included, the controller role granted) that
    tests copy."""
    with scratch_database(pg_admin_url, prefix="vapi_reconciler_template") as url:
        migrate(url, with_platform_schema=True)
        grants = ROLE_SQL.read_text(encoding="utf-8").replace("vapi_reconciler", controller_role)
        engine = sync_engine(url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(grants)
                conn.exec_driver_sql(
                    f"alter role \"{controller_role}\" password '{CONTROLLER_PASSWORD}'"
                )
        finally:
            engine.dispose()
        yield str(make_url(url).database)


@pytest.fixture
def database_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """An admin URL of a fresh database: what the platform (and a test's setup) writes with."""
    with scratch_database(pg_admin_url, prefix="vapi_reconciler_test", template=template_db) as url:
        yield url


@pytest.fixture
def controller_url(database_url: str, controller_role: str) -> str:
    """The same database as the controller sees it: under its least-privilege role."""
    url = make_url(database_url).set(username=controller_role, password=CONTROLLER_PASSWORD)
    return url.render_as_string(hide_password=False)


@pytest.fixture
async def platform(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine with the platform's rights, for a test's setup and for playing the platform."""
    engine = async_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState(account_key=TEST_KEY)


def make_settings(database_url: str, **sections: Any) -> Settings:
    raw: dict[str, Any] = {
        "database": {"url": database_url},
        "backend_url": BACKEND,
        "vapi": {"base_url": "http://vapi.test", "rate_limit_per_second": 1000, "burst": 50},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return Settings.model_validate(raw)


@pytest.fixture
def settings(controller_url: str) -> Settings:
    return make_settings(controller_url)


@pytest.fixture
async def runtime(settings: Settings, sim: SimulatorState) -> AsyncIterator[Runtime]:
    async with open_runtime(
        settings, key=MasterKey(TEST_KEY), transport=SimulatorTransport(sim)
    ) as opened:
        yield opened
