"""Shared fixtures: a real PostgreSQL and the Vapi simulator.

PostgreSQL is found in this order: ``TEST_DATABASE_URL`` or ``DATABASE_URL`` (an admin URL
on a server where the tests may create databases), testcontainers when a Docker engine
answers, else an embedded server from the ``pgserver`` wheel. Every test gets a fresh
database, copied from a migrated template made once per session.

Two platform schemas: the contract's (CONTRACT section 1, the default) and the live one
(``tests/platform/voxanne-live.sql``: Supabase roles, row-level security, nullable
``agents.org_id``). A test marked ``both_schemas`` runs on each; a test that parametrizes
``platform_schema`` indirectly (``["live"]``) runs on the one it names.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import Settings
from controller.reconcile.runtime import Runtime
from controller.runtime import open_runtime
from controller.secret import MasterKey
from controller.simulator import SimulatorState, SimulatorTransport
from desired_state.direct import dispose
from desired_state.embedded import embedded_postgres, scratch_database
from desired_state.engine import async_engine, sync_engine
from desired_state.migrate import migrate

TEST_KEY = "test-master-key-0123456789"
BACKEND = "https://backend.test"
ROLE_SQL = Path(__file__).resolve().parents[1] / "deploy" / "postgres" / "controller-role.sql"
CONTROLLER_PASSWORD = "controller-role-test-password"
LIVE_SQL = Path(__file__).resolve().parent / "platform" / "voxanne-live.sql"
PLATFORM_SCHEMAS = ("contract", "live")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_schemas: run on the contract's platform schema and on the live one "
        "(tests/platform/voxanne-live.sql)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_schemas") is not None:
        metafunc.parametrize("platform_schema", PLATFORM_SCHEMAS, indirect=True)


def live_platform_sql() -> str:
    """The live schema without psql's meta-commands (``\\set``), for a driver to run. On a
    server without Postgres' contrib extensions (the embedded ``pgserver`` has none), the
    one function of theirs the schema uses is made from the core's ``gen_random_uuid``."""
    lines = LIVE_SQL.read_text(encoding="utf-8").splitlines()
    script = "\n".join(line for line in lines if not line.startswith("\\"))
    for extension in CONTRIB_EXTENSIONS:
        assert extension in script, f"the live schema no longer says {extension}"
        script = script.replace(extension, _or_core(extension), 1)
    return script


CONTRIB_EXTENSIONS = (
    'create extension if not exists "uuid-ossp" with schema extensions;',
    "create extension if not exists pgcrypto with schema extensions;",
)
"""The live schema's extensions: it calls ``extensions.uuid_generate_v4()`` of the first,
and ``gen_random_uuid()`` (core since Postgres 13) in the name of the second."""


def _or_core(statement: str) -> str:
    shim = (
        "create or replace function extensions.uuid_generate_v4() returns uuid "
        "language sql as 'select gen_random_uuid()';"
        if "uuid-ossp" in statement
        else "null;"
    )
    missing = "feature_not_supported or undefined_file"  # Postgres 15 and later; before
    return f"do $$ begin {statement} exception when {missing} then {shim} end $$;"


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


def run_script(engine: Engine, script: str) -> None:
    """Run a whole SQL script in one transaction, verbatim (no placeholder processing)."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute(script)
        raw.commit()
    finally:
        raw.close()


@contextmanager
def controller_template(
    admin_url: str, role: str, *, prefix: str, platform_sql: str | None
) -> Iterator[str]:
    """A database with the platform's tables (``platform_sql``, else the contract's made by
    ``migrate --with-platform-schema``), migrated, the controller role granted (and given
    its row-level security policies where the tables have it); yields its name."""
    with scratch_database(admin_url, prefix=prefix) as url:
        engine = sync_engine(url)
        try:
            if platform_sql is not None:
                run_script(engine, platform_sql)
            migrate(url, with_platform_schema=platform_sql is None)
            grants = ROLE_SQL.read_text(encoding="utf-8").replace("vapi_reconciler", role)
            run_script(engine, grants)
            run_script(engine, f"alter role \"{role}\" password '{CONTROLLER_PASSWORD}'")
        finally:
            engine.dispose()
        yield str(make_url(url).database)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str, controller_role: str) -> Iterator[str]:
    """The contract's platform tables, migrated, the controller role granted: tests copy it."""
    with controller_template(
        pg_admin_url, controller_role, prefix="vapi_reconciler_template", platform_sql=None
    ) as name:
        yield name


@pytest.fixture(scope="session")
def live_template_db(pg_admin_url: str, controller_role: str) -> Iterator[str]:
    """The live platform's tables (tests/platform/voxanne-live.sql), migrated, the controller
    role granted with its policies: tests marked ``both_schemas`` copy it too."""
    with controller_template(
        pg_admin_url,
        controller_role,
        prefix="vapi_reconciler_live",
        platform_sql=live_platform_sql(),
    ) as name:
        yield name


@pytest.fixture
def platform_schema(request: pytest.FixtureRequest) -> str:
    """Which platform schema a test runs on: ``contract`` unless it asks for ``live``."""
    return str(getattr(request, "param", "contract"))


@pytest.fixture
def database_url(
    pg_admin_url: str, platform_schema: str, request: pytest.FixtureRequest
) -> Iterator[str]:
    """An admin URL of a fresh database: what the platform (and a test's setup) writes with.
    The live template is made only when a test asks for it."""
    template = request.getfixturevalue(
        "live_template_db" if platform_schema == "live" else "template_db"
    )
    with scratch_database(pg_admin_url, prefix="vapi_reconciler_test", template=template) as url:
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
    await dispose(engine)


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
