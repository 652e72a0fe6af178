"""The console commands, their output and their exit codes."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from desired_state.embedded import scratch_database
from desired_state.engine import sync_engine
from desired_state.migrate import head_revision
from tests.conftest import ROLE_SQL, TEST_KEY, run_script
from tests.e2e.conftest import Cli, sim_stats
from tests.e2e.daemon import seed


def test_migrate_is_idempotent_on_an_existing_schema(cli: Cli) -> None:
    first = cli("migrate", "--with-platform-schema")
    second = cli("migrate")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert f"schema at revision {head_revision()}" in second.stdout


def test_plan_reconcile_plan_status_round_trip(
    cli: Cli, database_url: str, simulator_url: str
) -> None:
    seed(database_url, 3)

    pending = cli("plan")
    assert pending.returncode == 2, pending.stderr
    assert "Plan: 12 to create" in pending.stdout
    assert sim_stats(simulator_url)["writes"] == 0

    done = cli("reconcile")
    assert done.returncode == 0, done.stderr
    assert "3 organizations: 3 synced" in done.stdout
    assert sim_stats(simulator_url)["assistants"] == 6

    clean = cli("plan", "--json")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["changes"] is False

    status = cli("status", "--json")
    assert status.returncode == 0
    document = json.loads(status.stdout)
    assert [row["state"] for row in document["organizations"]] == ["synced"] * 3
    assert document["controller"]["last_complete_pass"].endswith("Z")

    history = cli("history", "--json", "--limit", "2")
    assert history.returncode == 0, history.stderr
    assert [(w["method"], w["cause"]) for w in json.loads(history.stdout)] == [
        ("POST", "desired")
    ] * 2


def test_status_before_any_pass_shows_every_organization_pending_by_name(
    cli: Cli, database_url: str
) -> None:
    (first, _) = seed(database_url, 2)

    text = cli("status")
    one = cli("status", "--json", "--org", str(first.org_id))
    unknown = cli("status", "--org", "00000000-0000-0000-0000-00000000abcd")

    assert text.returncode == 0, text.stderr
    assert "daemons live: 0" in text.stdout
    assert "last complete pass: none yet" in text.stdout
    assert text.stdout.count("pending") == 3  # two rows and the header
    assert "Clinic 00001" in text.stdout
    assert [row["name"] for row in json.loads(one.stdout)["organizations"]] == ["Clinic 00000"]
    assert unknown.returncode == 1
    assert "neither desired nor known" in unknown.stderr


def test_version_prints_the_package_version(cli: Cli) -> None:
    result = cli("--version")

    assert result.returncode == 0
    assert result.stdout.startswith("vapi-reconciler ")


def test_plan_marks_drift_made_outside_the_controller(
    cli: Cli, database_url: str, simulator_url: str
) -> None:
    seed(database_url, 1)
    assert cli("reconcile").returncode == 0
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    victim = httpx.get(f"{simulator_url}/assistant", headers=headers).json()[0]
    edited = httpx.patch(
        f"{simulator_url}/assistant/{victim['id']}",
        headers=headers,
        json={"name": "Changed in dashboard"},
    )
    assert edited.status_code == 200

    plan = cli("plan")

    assert plan.returncode == 2
    assert "drift made outside the controller" in plan.stdout
    assert 'name: "Changed in dashboard" ->' in plan.stdout


def test_a_rejected_key_is_a_clear_error_that_never_prints_the_key(cli: Cli) -> None:
    env = {**cli.env, "VAPI_PRIVATE_KEY": "sk-live-wrong-key-987"}
    result = Cli(env, cli.cwd)("plan")
    assert result.returncode == 1
    assert "401" in result.stderr
    assert "sk-live-wrong-key-987" not in result.stdout + result.stderr


def test_a_missing_key_and_a_bad_config_fail_with_one_line(cli: Cli) -> None:
    no_key = Cli({k: v for k, v in cli.env.items() if k != "VAPI_PRIVATE_KEY"}, cli.cwd)
    assert "VAPI_PRIVATE_KEY" in no_key("reconcile").stderr
    (cli.cwd / "config.toml").write_text("[controller]\nmode = 'yolo'\n")
    bad = cli("status")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error:")
    assert "controller.mode" in bad.stderr


def test_an_http_backend_outside_development_refuses_to_start(cli: Cli) -> None:
    plain = Cli({**cli.env, "BACKEND_URL": "http://backend.internal"}, cli.cwd)
    for command in ("run", "reconcile", "plan"):
        result = plain(command, timeout=30)
        assert result.returncode == 1, command
        assert "https outside development" in result.stderr
    assert plain("status").returncode == 0  # CONTRACT: status reads, it writes no webhook
    unset = Cli({k: v for k, v in cli.env.items() if k != "BACKEND_URL"}, cli.cwd)
    result = unset("run", timeout=30)
    assert result.returncode == 1
    assert "BACKEND_URL is not set" in result.stderr


def test_every_set_up_error_stops_run_reconcile_and_plan_with_one_line_and_exit_1(
    cli: Cli, pg_admin_url: str
) -> None:
    """The table of issue 12's set-up errors: each command, its exit code, its one line."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    (cli.cwd / "typo.toml").write_text('[defaults]\nvoice_provider = "elevenlab"\n')
    (cli.cwd / "busy.toml").write_text(f'[server]\nlisten = "127.0.0.1:{busy}"\n')
    (cli.cwd / "badlisten.toml").write_text('[server]\nlisten = "localhost"\n')
    cases = [
        (("--config", "absent.toml"), "no such config file"),
        (("--config", "typo.toml"), "voice provider 'elevenlab' is unknown"),
        (("--config", "badlisten.toml"), "is not HOST:PORT"),
    ]
    try:
        with scratch_database(pg_admin_url, prefix="vapi_reconciler_bare") as bare:
            unmigrated = Cli({**cli.env, "DATABASE_URL": bare}, cli.cwd)
            for command in ("run", "reconcile", "plan"):
                for args, line in cases:
                    result = cli(command, *args, timeout=30)
                    assert (result.returncode, line in result.stderr) == (1, True), result.stderr
                    assert result.stderr.count("\n") == 1, result.stderr
                result = unmigrated(command, timeout=30)
                assert result.returncode == 1, result.stderr
                assert "run `vapi-reconciler migrate`" in result.stderr
                assert result.stderr.count("\n") == 1, result.stderr
        result = cli("run", "--config", "busy.toml", timeout=30)
        assert result.returncode == 1
        assert f"127.0.0.1:{busy}: Address already in use" in result.stderr
    finally:
        holder.close()


@pytest.mark.parametrize("platform_schema", ["live"], indirect=True)
def test_plan_and_doctor_refuse_a_blind_role_and_pass_once_the_role_script_gave_the_policies(
    cli: Cli, database_url: str, controller_url: str, controller_role: str
) -> None:
    seed(database_url, 2)
    as_role = Cli({**cli.env, "DATABASE_URL": controller_url}, cli.cwd)
    engine = sync_engine(database_url)
    try:
        run_script(engine, drop_policies_of(controller_role))

        blind_plan, blind_doctor = as_role("plan"), as_role("doctor")

        run_script(engine, ROLE_SQL.read_text().replace("vapi_reconciler", controller_role))
    finally:
        engine.dispose()
    plan, doctor = as_role("plan"), as_role("doctor", "--json")

    assert blind_plan.returncode == 1
    first, *fixes = blind_plan.stderr.splitlines()
    assert first.startswith(f"error: role {controller_role} cannot see the whole desired state")
    assert f'create policy "{controller_role}_select" on public.agents' in blind_plan.stderr
    assert len(fixes) == 8
    assert blind_doctor.returncode == 1
    assert "fail  platform tables: role" in blind_doctor.stdout
    assert plan.returncode == 2, plan.stderr
    assert "Plan: 10 to create" in plan.stdout
    assert doctor.returncode == 0, doctor.stdout
    assert {c["name"]: c["status"] for c in json.loads(doctor.stdout)}["platform tables"] == "ok"
    for result in (blind_plan, blind_doctor, plan, doctor):
        assert TEST_KEY not in result.stdout + result.stderr


def drop_policies_of(role: str) -> str:
    """A script that drops the row-level security policies deploy/postgres/controller-role.sql
    gave ``role``: the role keeps its grants and sees no row (an install made before it)."""
    return f"""
        do $$
        declare p record;
        begin
          for p in select polname, polrelid::regclass as tbl from pg_policy
                   where polname like '{role}\\_%' loop
            execute format('drop policy %I on %s', p.polname, p.tbl);
          end loop;
        end $$;
    """
