"""The ``vapi-reconciler`` command line (CONTRACT section 3).

Must stay cheap to import: ``reconcile`` and ``plan`` start from here, so what only some
commands use (the daemon's HTTP server and alert sinks, the demo's simulator and embedded
Postgres, rich's displays, alembic for ``migrate``, the output of ``plan``, ``status`` and
``history``, the reads behind the last two) is imported inside those commands
(tests/unit/test_startup_imports.py).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import click
import psycopg
from sqlalchemy.exc import DBAPIError

from controller import warmup
from controller.aio import run as run_loop
from controller.config import ConfigError, Settings, load_settings
from controller.logs import configure_logging, log_banner
from controller.preflight import HiddenStateError, ListenError, SetupError, check_setup
from controller.reconcile.full_pass import plan_pass, reconcile_pass
from controller.runtime import open_runtime
from controller.secret import MissingKeyError, read_master_key, redact
from controller.vapi.errors import VapiError
from controller.version import package_version
from desired_state.engine import DatabaseURLError, async_engine
from desired_state.findings import Finding, load_findings
from desired_state.shape import PlatformShapeError

if TYPE_CHECKING:
    from rich.console import Console

    from desired_state.views import Overview

F = TypeVar("F", bound=Callable[..., Any])
SIM_EXTRA = ("vapi", "pgserver")
"""Top-level modules of the ``sim`` extra (pyproject.toml): only ``demo`` needs them."""

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("config.toml"),
    show_default=True,
    help="Settings file; DATABASE_URL, VAPI_BASE_URL and BACKEND_URL in the environment win.",
)
org_option = click.option(
    "--org",
    "org_ids",
    type=click.UUID,
    multiple=True,
    help="Only this organization (repeatable). Tools are always converged account-wide.",
)


def _fails_cleanly(command: F) -> F:
    """Known failures print one line (never the key) and exit 1."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (
            ConfigError,
            MissingKeyError,
            DatabaseURLError,
            VapiError,
            SetupError,
            ListenError,
        ) as exc:
            click.echo(f"error: {redact(str(exc))}", err=True)
        except PlatformShapeError as exc:  # the shape changed after the start-up check
            click.echo(f"error: {redact(str(HiddenStateError(exc.shape)))}", err=True)
        except DBAPIError as exc:
            click.echo(f"error: database: {redact(str(exc.orig)).strip()}", err=True)
        except psycopg.Error as exc:  # the hot path's direct connections
            click.echo(f"error: database: {redact(str(exc)).strip()}", err=True)
        sys.exit(1)

    return run  # type: ignore[return-value]


class _Commands(click.Group):
    """Every command line that cannot be parsed exits 1 (never click's 2, which ``plan``
    uses for "changes pending")."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.ClickException as exc:
            exc.show()
            sys.exit(1)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the installed version is looked up (a scan of the installed packages'
    metadata) only when asked for, not by every command's start."""
    if value and not ctx.resilient_parsing:
        click.echo(f"vapi-reconciler {package_version()}")
        ctx.exit()


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    "-V",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING...")
@click.option(
    "--log-json/--log-text", default=None, help="Log format; default: JSON unless on a terminal."
)
def main(log_level: str, log_json: bool | None) -> None:
    """Keep a Vapi account in line with the platform's Postgres."""
    configure_logging(level=log_level.upper(), json=log_json)


@main.command()
@config_option
@click.option(
    "--with-platform-schema",
    is_flag=True,
    help="Also create the platform's tables (organizations, agents, ...) where absent.",
)
@_fails_cleanly
def migrate(config_path: Path, with_platform_schema: bool) -> None:
    """Create or upgrade the controller's own schema."""
    from desired_state.migrate import migrate as run_migrations

    settings = load_settings(config_path, required=False)
    revision = run_migrations(settings.database.url, with_platform_schema=with_platform_schema)
    click.echo(f"schema at revision {revision}")


@main.command()
@config_option
@click.option(
    "--replica-id",
    default=None,
    help="This replica's name in the queue and logs (default: random). Unique per process.",
)
@_fails_cleanly
def run(config_path: Path, replica_id: str | None) -> None:
    """The daemon: reconcile continuously until SIGTERM/SIGINT, then stop cleanly (exit 0).

    Reloads the config file within [controller] reload_interval_seconds and on SIGHUP.
    Serves /healthz, /readyz and /metrics on [server] listen.
    """
    from controller.daemon.metrics import Metrics
    from controller.daemon.supervisor import Daemon

    warmup.start()
    settings = load_settings(config_path)
    key = read_master_key()

    async def serve() -> None:
        metrics = Metrics()
        async with open_runtime(settings, key=key, observer=metrics.observe_vapi) as runtime:
            with contextlib.suppress(DBAPIError, OSError):  # down: the daemon waits for it
                await check_setup(runtime.engine)
            daemon = Daemon(
                runtime, config_path=config_path, metrics=metrics, replica_id=replica_id
            )
            server = daemon.server()  # bound here: a port in use is a set-up error
            log_banner(settings, config_path=config_path)  # after every set-up check
            await daemon.run(server)

    run_loop(serve())


@main.command()
@config_option
@org_option
@_fails_cleanly
def reconcile(config_path: Path, org_ids: tuple[UUID, ...]) -> None:
    """One full pass, then exit: 0 if every desired organization converged, 1 otherwise."""
    warmup.start()
    settings = load_settings(config_path)

    async def run() -> bool:
        with _progress_bar("reconciling organizations") as on_progress:
            async with open_runtime(settings, key=read_master_key()) as runtime:
                outcome = await reconcile_pass(
                    runtime,
                    org_ids=org_ids or None,
                    on_progress=on_progress,
                    gate=check_setup(runtime.engine),
                )
        states = ", ".join(f"{n} {s}" for s, n in sorted(outcome.states().items()))
        click.echo(f"{len(outcome.orgs)} organizations: {states or 'none'}")
        for error in outcome.tool_errors:
            click.echo(f"tool error: {error}", err=True)
        if outcome.prune_blocked:
            click.echo(outcome.prune_blocked, err=True)
        return outcome.converged

    sys.exit(0 if run_loop(run()) else 1)


@main.command()
@config_option
@org_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_fails_cleanly
def plan(config_path: Path, org_ids: tuple[UUID, ...], as_json: bool) -> None:
    """What a pass would change, changing nothing: exit 0 none, 2 pending, 1 error."""
    warmup.start()
    settings = load_settings(config_path)

    async def run() -> bool:
        async with open_runtime(settings, key=read_master_key()) as runtime:
            await check_setup(runtime.engine)
            pending = await plan_pass(runtime, org_ids=org_ids or None)
        from controller.report import Controls, plan_json, plan_text

        controls = Controls.of(settings)
        if as_json:
            click.echo(json.dumps(plan_json(pending, controls=controls), indent=2, default=str))
        else:
            click.echo(plan_text(pending, controls=controls))
        return pending.has_changes

    sys.exit(2 if run_loop(run()) else 0)


@main.command()
@config_option
@click.option("--org", "org_id", type=click.UUID, default=None, help="Only this organization.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_fails_cleanly
def status(config_path: Path, org_id: UUID | None, as_json: bool) -> None:
    """Each organization's state, unreconciled ones first, under what the controller is doing.

    Every organization of the desired set and every one with a status row; a desired one not
    reconciled yet is `pending`. Exit 1 for an --org the controller does not know.
    """
    from controller.status_report import (
        findings_table,
        status_header,
        status_json,
        status_rows_sorted,
        status_table,
    )

    settings = load_settings(config_path, required=False)
    read = run_loop(_read_status(settings, org_id))
    rows = status_rows_sorted(read.rows)
    if org_id is not None and not rows:
        click.echo(f"error: organization {org_id} is neither desired nor known", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(status_json(rows, read.overview, settings), indent=2))
        return
    console = _console()
    for line in status_header(read.overview, settings, config=str(config_path)):
        console.print(line, markup=False, highlight=False)
    console.print(status_table(rows, now=read.overview.now))
    if read.findings:
        console.print(findings_table(read.findings))


@dataclass(frozen=True)
class _Status:
    rows: list[dict[str, Any]]
    overview: Overview
    findings: Sequence[Finding]


async def _read_status(settings: Settings, org_id: UUID | None) -> _Status:
    from desired_state.views import load_overview, load_status_rows

    engine = async_engine(settings.database.url, pool_size=1)
    try:
        async with engine.connect() as conn:
            findings = await load_findings(conn)
            rows = await load_status_rows(conn, org_id=org_id)
            overview = await load_overview(conn, live_within=settings.controller.lease_seconds)
    finally:
        await engine.dispose()
    findings = [f for f in findings if org_id is None or f.org_id == org_id]
    where: dict[UUID, list[str]] = {}
    for finding in findings:
        where.setdefault(finding.org_id, []).append(finding.location)
    for row in rows:
        row["security_findings"] = where.get(row["org_id"], [])
    return _Status(rows, overview, findings)


@main.command()
@config_option
@click.option("--org", "org_id", type=click.UUID, default=None, help="Only this organization.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=10_000),
    default=50,
    show_default=True,
    help="At most this many writes.",
)
@_fails_cleanly
def history(config_path: Path, org_id: UUID | None, as_json: bool, limit: int) -> None:
    """The Vapi writes made, newest first: what changed and why.

    Time, organization, agent, method, Vapi id, the fields changed (before -> after, secrets
    redacted), why (desired change, drift, adoption, relink, prune), HTTP status, duration.
    Kept for [audit] keep_days.
    """
    from controller.history_report import history_json, history_text

    settings = load_settings(config_path, required=False)
    rows = run_loop(_read_history(settings, org_id=org_id, limit=limit))
    if as_json:
        click.echo(json.dumps(history_json(rows), indent=2))
        return
    click.echo(history_text(rows))


async def _read_history(
    settings: Settings, *, org_id: UUID | None, limit: int
) -> list[dict[str, Any]]:
    from desired_state.views import load_history

    engine = async_engine(settings.database.url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await load_history(conn, org_id=org_id, limit=limit)
    finally:
        await engine.dispose()


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: a list of checks.")
def doctor(config_path: Path, as_json: bool) -> None:
    """Check the set-up without writing anything: exit 0 when every check passes, else 1.

    Config, BACKEND_URL, Postgres, the controller's schema, the platform's tables as the
    controller's role sees them (columns, privileges, row-level security), the change
    triggers, LISTEN/NOTIFY and the Vapi key; each failure says how to fix it.
    """
    from controller.doctor import as_text, diagnose, passed

    checks = run_loop(diagnose(config_path))
    if as_json:
        click.echo(json.dumps([c.as_json() for c in checks], indent=2))
    else:
        click.echo(as_text(checks))
    sys.exit(0 if passed(checks) else 1)


@main.command()
@config_option
@click.option("--orgs", default=24, show_default=True, help="How many clinics to seed.")
@_fails_cleanly
def demo(config_path: Path, orgs: int) -> None:
    """The whole loop on embedded defaults: no Postgres, no Vapi key needed.

    Takes [defaults] and [controller] from the config file when there is one; the database
    and Vapi are always the demo's own (an embedded Postgres, the simulator).
    """
    try:
        from controller.demo import run_demo
    except ModuleNotFoundError as exc:
        if exc.name not in SIM_EXTRA:
            raise
        raise click.ClickException(
            f"demo needs the simulator's packages ({exc.name} is not installed): "
            "pip install 'vapi-reconciler[sim]'"
        ) from None

    settings = load_settings(config_path, required=False)
    configure_logging(level="WARNING", json=False)
    run_demo(orgs=orgs, console=_console(), base=settings)


@contextmanager
def _progress_bar(what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr while on a terminal; nothing otherwise (and rich is not
    imported)."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.console import Console

    from controller.progress import progress_bar

    with progress_bar(Console(stderr=True)) as progress:
        task = progress.add_task(what, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def _console() -> Console:
    """Colour and live displays on a terminal only; tables not squeezed into 80 columns when
    the output goes to a file or a pipe."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 140))
