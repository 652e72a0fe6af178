"""``doctor`` and the set-up check on the live platform schema, before and after the
controller role's policies: what it says, what it refuses, and that the daemon stays not
ready (and reconciles nothing) while the platform's tables hide part of the desired state."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.daemon.guard import Guard
from controller.daemon.health import DESIRED_STATE_NOT_VISIBLE, Health
from controller.daemon.metrics import Metrics
from controller.doctor import Check, as_text, diagnose, passed
from controller.preflight import HiddenStateError, check_setup
from controller.reconcile.runtime import Runtime
from controller.simulator import SimulatorState, SimulatorTransport
from desired_state.embedded import scratch_database
from desired_state.engine import sync_engine
from desired_state.migrate import HERE as DESIRED_STATE_DIR
from desired_state.migrate import migrate
from desired_state.sample import seed_clinics
from desired_state.shape import PlatformShape, PlatformShapeError, Problem, policy_sql
from tests.conftest import BACKEND, ROLE_SQL, TEST_KEY, run_script
from tests.integration.helpers import running, until, with_controller
from tests.integration.test_live_schema import drop_controller_policies

live = pytest.mark.parametrize("platform_schema", ["live"], indirect=True)


def env_of(url: str, key: str = TEST_KEY) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "VAPI_PRIVATE_KEY": key,
        "VAPI_BASE_URL": "http://vapi.test",
        "BACKEND_URL": BACKEND,
    }


async def doctor(
    url: str, sim: SimulatorState, tmp_path: Path, *, key: str = TEST_KEY
) -> list[Check]:
    config = tmp_path / "config.toml"
    config.write_text("[controller]\nmode = 'observe'\n")
    return await diagnose(config, environ=env_of(url, key), transport=SimulatorTransport(sim))


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def apply_role_script(database_url: str, role: str) -> None:
    engine = sync_engine(database_url)
    try:
        run_script(engine, ROLE_SQL.read_text().replace("vapi_reconciler", role))
    finally:
        engine.dispose()


@live
async def test_doctor_without_the_policies_names_each_hidden_table_with_its_create_policy_fix(
    platform: AsyncEngine,
    controller_url: str,
    controller_role: str,
    sim: SimulatorState,
    tmp_path: Path,
) -> None:
    await drop_controller_policies(platform, controller_role)

    checks = await doctor(controller_url, sim, tmp_path)
    text = as_text(checks)

    assert not passed(checks)
    assert [c.name for c in checks if c.status == "fail"] == ["platform tables"]
    hidden = by_name(checks)["platform tables"]
    assert hidden.detail.startswith(f"role {controller_role} cannot see the whole desired state")
    assert "8 problems in organizations, agents, org_tools, integrations" in hidden.detail
    for table, command in [("organizations", "select"), ("agents", "update")]:
        assert f"fix: {policy_sql(table, command, controller_role)}" in text
    assert "unusable rows" not in text, "no counting through a partial view"
    assert TEST_KEY not in text


@live
async def test_doctor_passes_once_the_role_script_has_given_the_policies(
    database_url: str,
    platform: AsyncEngine,
    controller_url: str,
    controller_role: str,
    sim: SimulatorState,
    tmp_path: Path,
) -> None:
    await drop_controller_policies(platform, controller_role)
    apply_role_script(database_url, controller_role)

    checks = await doctor(controller_url, sim, tmp_path)

    assert passed(checks), as_text(checks)
    assert [c.name for c in checks] == [
        "config",
        "BACKEND_URL",
        "postgres",
        "controller schema",
        "platform tables",
        "change triggers",
        "LISTEN/NOTIFY",
        "Vapi key",
        "unusable rows",
        "security findings",
    ]
    assert (
        "optional, absent: org_tools.definition_hash" in by_name(checks)["platform tables"].detail
    )
    assert sim.writes == []


async def test_doctor_says_to_run_migrate_again_when_it_ran_before_the_platform_tables(
    pg_admin_url: str, sim: SimulatorState, tmp_path: Path
) -> None:
    with scratch_database(pg_admin_url, prefix="vapi_reconciler_doctor") as url:
        migrate(url)
        engine = sync_engine(url)
        try:
            run_script(engine, (DESIRED_STATE_DIR / "platform_schema.sql").read_text())
        finally:
            engine.dispose()

        checks = by_name(await doctor(url, sim, tmp_path))

    triggers = checks["change triggers"]
    assert triggers.status == "fail"
    assert "vapi_reconciler_agent_write on public.agents" in triggers.detail
    assert "a migrate run before the platform's tables existed installs none" in triggers.detail
    assert triggers.fix[0].startswith("re-run vapi-reconciler migrate")
    assert checks["platform tables"].status == "ok"


async def test_doctor_reports_a_rejected_key_without_printing_either_key(
    controller_url: str, sim: SimulatorState, tmp_path: Path
) -> None:
    checks = await doctor(controller_url, sim, tmp_path, key="sk-live-wrong-key-987")
    text = as_text(checks)

    assert by_name(checks)["Vapi key"].status == "fail"
    assert "VAPI_PRIVATE_KEY" in by_name(checks)["Vapi key"].fix[0]
    assert "sk-live-wrong-key-987" not in text
    assert TEST_KEY not in text


@live
async def test_the_start_up_check_refuses_a_blind_role_with_the_sql_that_fixes_it(
    platform: AsyncEngine, runtime: Runtime, controller_role: str
) -> None:
    await drop_controller_policies(platform, controller_role)

    with pytest.raises(HiddenStateError) as refused:
        await check_setup(runtime.engine)

    first, *fixes = str(refused.value).splitlines()
    assert first.startswith(f"role {controller_role} cannot see the whole desired state")
    assert len(fixes) == 8
    assert all(line.strip().startswith("create policy") for line in fixes)


@live
async def test_the_daemon_is_not_ready_and_reconciles_nothing_until_the_policies_are_given(
    database_url: str,
    platform: AsyncEngine,
    runtime: Runtime,
    controller_role: str,
    sim: SimulatorState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with platform.begin() as conn:
        await seed_clinics(conn, 2)
    await drop_controller_policies(platform, controller_role)
    conditions: dict[str, bool] = {}

    async with running(with_controller(runtime, idle_poll_seconds=0.05)) as daemon:
        condition = daemon.alerter.condition

        def record(name: str, *, present: bool) -> None:
            conditions[name] = present
            condition(name, present=present)

        monkeypatch.setattr(daemon.alerter, "condition", record)
        await until(lambda: conditions.get(DESIRED_STATE_NOT_VISIBLE, False), "the condition")
        ready, why = daemon.health.readiness()
        assert not ready
        assert "cannot see the whole desired state" in why
        assert policy_sql("organizations", "select", controller_role) in why
        assert sim.writes == []

        apply_role_script(database_url, controller_role)

        await until(lambda: daemon.health.readiness()[0], "ready once the policies are there")
        await until(lambda: len(sim.objects["assistant"]) == 4, "the four agents reconciled")
        assert conditions[DESIRED_STATE_NOT_VISIBLE] is False


class Conditions(dict[str, bool]):
    """An alerter that only remembers which conditions are present."""

    def condition(self, name: str, *, present: bool) -> None:
        self[name] = present


async def test_a_hidden_table_met_by_a_part_is_a_set_up_problem_not_an_internal_error() -> None:
    conditions, metrics = Conditions(), Metrics()
    health = Health(conditions, "r1", stall_seconds=60)  # type: ignore[arg-type]
    guard = Guard(health, metrics)
    fix = policy_sql("agents", "select", "r")
    hidden = PlatformShape("r", {}, (Problem("agents", "row-level security hides rows", fix),))

    async def load() -> None:
        raise PlatformShapeError(hidden)

    assert await guard.run("claim", load) is None
    ready, why = health.readiness()
    assert not ready
    assert fix in why
    assert conditions == {DESIRED_STATE_NOT_VISIBLE: True}
    assert metrics.internal_errors.labels("claim")._value.get() == 0

    health.set_up(None)
    assert not health.set_up_wrong
    assert conditions == {DESIRED_STATE_NOT_VISIBLE: False}
