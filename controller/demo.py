"""``vapi-reconciler demo``: the whole loop on embedded defaults.

Seeds clinics into a throwaway database (embedded PostgreSQL unless ``DATABASE_URL`` names a
server), runs the reconcile against the in-process Vapi simulator, edits assistants behind
its back and shows them healed, pauses one organization and shows it held, and cleans up.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from sqlalchemy import update

from controller.config import ControllerSettings, Settings
from controller.reconcile.converge import Runtime
from controller.reconcile.full_pass import plan_pass, reconcile_pass
from controller.report import plan_text, status_rows_sorted, status_table
from controller.runtime import open_runtime
from controller.secret import MasterKey
from controller.simulator import SimulatorState, SimulatorTransport
from desired_state.embedded import embedded_postgres, scratch_database
from desired_state.load import load_status
from desired_state.migrate import migrate
from desired_state.sample import seed_clinics
from desired_state.tables import agents

DEMO_KEY = "demo-simulator-key"


def run_demo(*, orgs: int, console: Console, base: Settings | None = None) -> None:
    with _database(console) as url:
        console.print("[bold]1.[/] migrating the schema (platform tables included)")
        migrate(url, with_platform_schema=True)
        asyncio.run(_story(url, orgs, console, base or Settings()))
    console.print("[bold green]demo finished[/]; everything it created is gone")


async def _story(url: str, orgs: int, console: Console, base: Settings) -> None:
    state = SimulatorState(account_key=DEMO_KEY)
    settings = Settings.model_validate(
        {
            "database": {"url": url},
            "backend_url": "https://backend.demo.example",
            "vapi": {"base_url": "http://simulator", "rate_limit_per_second": 200, "burst": 20},
            "defaults": base.defaults.model_dump(),
            "controller": {**base.controller.model_dump(), "paused": False, "mode": "enforce"},
        }
    )
    async with open_runtime(
        settings, key=MasterKey(DEMO_KEY), transport=SimulatorTransport(state)
    ) as runtime:
        async with runtime.engine.begin() as conn:
            clinics = await seed_clinics(conn, orgs)
        console.print(f"[bold]2.[/] seeded {orgs} clinics x 2 agents; Vapi is empty")
        outcome = await reconcile_pass(runtime)
        console.print(
            f"[bold]3.[/] converged: {dict(outcome.states())}; Vapi now holds "
            f"{len(state.objects['assistant'])} assistants and {len(state.objects['tool'])} "
            f"tools, after {len(state.writes)} writes"
        )
        victims = list(state.objects["assistant"])[:3]
        state.edit_behind_the_back("assistant", victims[0], {"name": "Edited in dashboard"})
        state.edit_behind_the_back(
            "assistant", victims[1], {"voice": {"provider": "vapi", "voiceId": "Rohan"}}
        )
        console.print("[bold]4.[/] edited 2 assistants in the 'dashboard'; the plan shows:")
        console.print(plan_text(await plan_pass(runtime)), markup=False, highlight=False)
        writes = len(state.writes)
        outcome = await reconcile_pass(runtime)
        console.print(
            f"[bold]5.[/] healed with {len(state.writes) - writes} writes: {dict(outcome.states())}"
        )
        held = clinics[0].org_id
        paused = _with_controller(settings, paused_orgs=(held,))
        async with runtime.engine.begin() as conn:
            await conn.execute(
                update(agents)
                .where(agents.c.org_id == held)
                .values(system_prompt="You are a brand new receptionist.")
            )
        writes = len(state.writes)
        outcome = await reconcile_pass(Runtime(runtime.engine, runtime.client, paused))
        console.print(
            f"[bold]6.[/] organization {held} paused in config; its prompts changed: "
            f"{len(state.writes) - writes} writes, state "
            f"{next(o.state for o in outcome.orgs if o.org_id == held)}"
        )
        outcome = await reconcile_pass(runtime)
        console.print(f"[bold]7.[/] resumed: {dict(outcome.states())}")
        async with runtime.engine.connect() as conn:
            rows = status_rows_sorted(await load_status(conn))
        console.print(status_table(rows[:10]))


def _with_controller(settings: Settings, **changes: object) -> Settings:
    controller = ControllerSettings.model_validate({**settings.controller.model_dump(), **changes})
    return settings.model_copy(update={"controller": controller})


@contextmanager
def _database(console: Console) -> Iterator[str]:
    server = os.environ.get("DATABASE_URL")
    if server:
        console.print("using the PostgreSQL server of DATABASE_URL (a throwaway database)")
        with scratch_database(server, prefix="vapi_reconciler_demo") as url:
            yield url
        return
    console.print("starting an embedded PostgreSQL (no DATABASE_URL set)")
    with (
        tempfile.TemporaryDirectory(prefix="vapi-reconciler-demo-") as data,
        embedded_postgres(Path(data)) as admin,
        scratch_database(admin, prefix="demo") as url,
    ):
        yield url
