"""``vapi-reconciler demo``: the whole loop on embedded defaults.

Seeds clinics into a throwaway database (embedded PostgreSQL unless ``DATABASE_URL`` names a
server) and runs the real daemon against the in-process Vapi simulator with a live progress
display; edits assistants behind its back and shows them healed; pauses one organization
through the daemon's config file and shows it held, then resumed; ends with the status
table and cleans up.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import click
from rich.console import Console
from sqlalchemy import select, update

from controller.aio import run as run_loop
from controller.config import Settings, load_settings
from controller.core.observed import ObservedAssistant
from controller.daemon.metrics import Metrics
from controller.daemon.supervisor import Daemon
from controller.progress import progress_bar
from controller.reconcile.full_pass import plan_pass
from controller.reconcile.runtime import Runtime
from controller.report import plan_text
from controller.runtime import open_runtime
from controller.secret import MasterKey
from controller.simulator import SimulatorState, SimulatorTransport
from controller.status_report import status_rows_sorted, status_table
from desired_state.embedded import embedded_postgres, scratch_database
from desired_state.load import load_state_counts
from desired_state.migrate import migrate
from desired_state.sample import SampleOrg, seed_clinics
from desired_state.tables import agents, org_status
from desired_state.views import load_status_rows

DEMO_KEY = "demo-simulator-key"


def run_demo(*, orgs: int, console: Console, base: Settings | None = None) -> None:
    with _database(console) as url:
        console.print("[bold]1.[/] migrating the schema (platform tables included)")
        migrate(url, with_platform_schema=True)
        with tempfile.TemporaryDirectory(prefix="vapi-reconciler-demo-") as workdir:
            story = Story(url, orgs, console, base or Settings(), Path(workdir) / "config.toml")
            run_loop(story.tell())
    console.print("[bold green]demo finished[/]; everything it created is gone")


@dataclass
class Story:
    url: str
    orgs: int
    console: Console
    base: Settings
    config: Path
    sim: SimulatorState = field(default_factory=lambda: SimulatorState(account_key=DEMO_KEY))

    async def tell(self) -> None:
        settings = self._write_config(paused_orgs=[])
        async with open_runtime(
            settings, key=MasterKey(DEMO_KEY), transport=SimulatorTransport(self.sim)
        ) as runtime:
            async with runtime.engine.begin() as conn:
                clinics = await seed_clinics(conn, self.orgs)
            self.console.print(
                f"[bold]2.[/] seeded {self.orgs} clinics x 2 agents; Vapi is empty. "
                f"Starting the daemon (`vapi-reconciler run`) with {self.config.name}:"
            )
            daemon = Daemon(runtime, config_path=self.config, metrics=Metrics())
            running = asyncio.create_task(daemon.run())
            try:
                await self._converge(runtime, clinics)
                await self._heal(runtime)
                await self._pause(runtime, clinics[0].org_id)
                async with runtime.engine.connect() as conn:
                    rows = status_rows_sorted(await load_status_rows(conn))
                self.console.print(status_table(rows[:10], now=datetime.now(UTC)))
            finally:
                daemon.stop()
                await running

    async def _converge(self, runtime: Runtime, clinics: Sequence[SampleOrg]) -> None:
        async def synced() -> int:
            return (await self._states(runtime)).get("synced", 0)

        await self._until("converging", synced, total=len(clinics))
        self.console.print(
            f"[bold]3.[/] converged: {await self._states(runtime)}; Vapi now holds "
            f"{len(self.sim.objects['assistant'])} assistants and "
            f"{len(self.sim.objects['tool'])} tools, after {len(self.sim.writes)} writes"
        )

    async def _heal(self, runtime: Runtime) -> None:
        victims = sorted(self.sim.objects["assistant"])[:2]
        self.sim.edit_behind_the_back("assistant", victims[0], {"name": "Edited in dashboard"})
        self.sim.edit_behind_the_back(
            "assistant", victims[1], {"voice": {"provider": "vapi", "voiceId": "Rohan"}}
        )
        self.console.print("[bold]4.[/] edited 2 assistants in the 'dashboard'; `plan` shows:")
        plan = await plan_pass(runtime)
        self.console.print(plan_text(plan), markup=False, highlight=False)
        writes = len(self.sim.writes)

        async def healed() -> int:
            return len({w.vapi_id for w in self.sim.writes[writes:]} & set(victims))

        await self._until("healing", healed, total=len(victims))
        self.console.print(
            f"[bold]5.[/] the daemon's change poll saw them and healed them with "
            f"{len(self.sim.writes) - writes} writes"
        )

    async def _pause(self, runtime: Runtime, held: UUID) -> None:
        self._write_config(paused_orgs=[str(held)])

        async def reloaded() -> int:
            return int(runtime.settings.is_paused(held))

        await self._until("reloading config.toml", reloaded, total=1)
        ours = {str(a.id) for a in self._assistants_of(held)}
        writes = len(self.sim.writes)
        async with runtime.engine.begin() as conn:
            await conn.execute(
                update(agents)
                .where(agents.c.org_id == held)
                .values(system_prompt="You are a brand new receptionist.")
            )
        await self._until("holding", self._state_is(runtime, held, "paused"), total=1)
        held_writes = [w for w in self.sim.writes[writes:] if w.vapi_id in ours]
        self.console.print(
            f"[bold]6.[/] organization {held} paused in {self.config.name}; its prompts "
            f"changed: {len(held_writes)} writes, state paused"
        )
        self._write_config(paused_orgs=[])
        await self._until("resuming", self._state_is(runtime, held, "synced"), total=1)
        resumed = [w for w in self.sim.writes[writes:] if w.vapi_id in ours]
        self.console.print(
            f"[bold]7.[/] resumed by removing it from paused_orgs: {len(resumed)} writes, "
            f"{await self._states(runtime)}"
        )

    async def _until(self, what: str, reached: Callable[[], Awaitable[int]], total: int) -> None:
        """A live progress bar while the daemon works, until ``reached`` gets to ``total``."""
        with progress_bar(self.console) as progress:
            task = progress.add_task(what, total=total)
            deadline = time.monotonic() + DEMO_TIMEOUT
            while (count := await reached()) < total:
                progress.update(task, completed=count)
                if time.monotonic() > deadline:
                    raise click.ClickException(f"demo: {what} took over {DEMO_TIMEOUT}s")
                await asyncio.sleep(0.1)

    async def _states(self, runtime: Runtime) -> dict[str, int]:
        async with runtime.engine.connect() as conn:
            counts = await load_state_counts(conn)
        return {state: n for state, n in sorted(counts.items()) if state != "unreconciled"}

    def _state_is(self, runtime: Runtime, org_id: UUID, state: str) -> Callable[[], Awaitable[int]]:
        async def reached() -> int:
            async with runtime.engine.connect() as conn:
                found = await conn.execute(
                    select(org_status.c.state).where(org_status.c.org_id == org_id)
                )
            return int(found.scalar_one_or_none() == state)

        return reached

    def _assistants_of(self, org_id: UUID) -> list[ObservedAssistant]:
        found = (ObservedAssistant(body) for body in self.sim.objects["assistant"].values())
        return [a for a in found if a.org_tag == org_id]

    def _write_config(self, *, paused_orgs: list[str]) -> Settings:
        """The daemon's config.toml: the operator's [defaults], the demo's own database and
        simulator, quick polls so healing shows within seconds."""
        controller = {
            **self.base.controller.model_dump(mode="json"),
            "paused": False,
            "mode": "enforce",
            "paused_orgs": paused_orgs,
            "reload_interval_seconds": 0.5,
        }
        document = {
            "backend_url": "https://backend.demo.example",
            "controller": controller,
            "defaults": self.base.defaults.model_dump(mode="json"),
            "vapi": {
                "base_url": "http://simulator.demo",
                "rate_limit_per_second": 200,
                "burst": 20,
                "poll_interval_seconds": 1,
            },
            "database": {"url": self.url},
            "server": {"listen": "127.0.0.1:0"},
        }
        self.config.write_text(_toml(document))
        return load_settings(self.config)


DEMO_TIMEOUT = 120.0


def _toml(document: Mapping[str, Any]) -> str:
    """Enough TOML for the demo's config: tables of strings, numbers, booleans, lists."""
    top = [f"{k} = {json.dumps(v)}" for k, v in document.items() if not isinstance(v, Mapping)]
    tables = [
        f"\n[{name}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
        for name, table in document.items()
        if isinstance(table, Mapping)
    ]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


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
