"""The daemon: a supervisor of small parts.

The claim loop (``claims``), the periodic jobs (``jobs``, on APScheduler), the health server
(``http``), the config reload (``reload``) and the LISTEN wake-ups (``listener``) run side by
side; this module builds them, starts them, and stops them in order on SIGTERM/SIGINT: no new
claims, in-flight work finishes within the grace period, the jobs stop (and the running ones
are awaited), claims still held are released, the replica leaves, the server closes.

Every failure of Postgres or Vapi is survived by waiting and trying again (``guard``);
nothing is lost because the work rows are durable and a reconcile is idempotent. Nothing is
claimed until the set-up check passes (``preflight.setup_problem``: the schema's revision,
the platform's tables fully visible); until then, and whenever a part meets a set-up problem
later, ``/readyz`` says what is wrong and the check runs again until it is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from loguru import logger

from controller.alerting.alerter import Alerter
from controller.alerting.sinks import Sinks
from controller.config import Settings
from controller.daemon.claims import DOWN_RETRY_SECONDS, ClaimLoop
from controller.daemon.guard import Guard
from controller.daemon.health import Health
from controller.daemon.http import HealthServer, health_app, health_server
from controller.daemon.jobs import Jobs
from controller.daemon.listener import listen
from controller.daemon.metrics import Metrics
from controller.daemon.reload import ConfigWatcher, Reloader
from controller.preflight import setup_problem
from controller.reconcile.chain import Chain
from controller.reconcile.findings import report_findings
from controller.reconcile.observe import ObservedCache
from controller.reconcile.runtime import Runtime
from desired_state import queue
from desired_state.load import has_phone_numbers
from desired_state.queue import Lane

JOBS_GRACE_SECONDS = 1.0
"""Periodic jobs still running at shutdown get at least this long to finish, even when the
claims used up the grace period."""


class Daemon:
    def __init__(
        self,
        runtime: Runtime,
        *,
        config_path: Path | None,
        metrics: Metrics,
        replica_id: str | None = None,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.metrics = metrics
        self.replica_id = replica_id or f"replica-{uuid.uuid4().hex[:8]}"
        self.cache = ObservedCache(runtime.client)
        self.alerter = Alerter(
            runtime.engine, Sinks.from_settings(settings.alerting), settings.alerting
        )
        self.health = Health(
            self.alerter, self.replica_id, stall_seconds=settings.controller.stall_seconds
        )
        self.guard = Guard(self.health, metrics)
        self.claims = ClaimLoop(
            runtime=runtime,
            chain=Chain(runtime, self.cache),
            health=self.health,
            metrics=metrics,
            guard=self.guard,
            replica_id=self.replica_id,
        )
        self.reloader = (
            Reloader(ConfigWatcher(config_path, settings), self._apply_settings)
            if config_path
            else None
        )
        self.jobs = Jobs(
            runtime=runtime,
            cache=self.cache,
            claims=self.claims,
            health=self.health,
            metrics=metrics,
            guard=self.guard,
            alerter=self.alerter,
            reloader=self.reloader,
            replica_id=self.replica_id,
        )
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[object]] = set()

    def server(self) -> HealthServer:
        return health_server(
            health_app(
                alive=self.health.liveness, ready=self.health.readiness, metrics=self.metrics
            ),
            self.runtime.settings.server.host_port,
        )

    async def run(self, server: HealthServer | None = None) -> None:
        """Until ``stop``. ``server``: the health server, already bound (see ``cli``)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, self._reload_now)
        serving = self._spawn(server.serve()) if server is not None else None
        try:
            self.jobs.start()
            await self._start()
            if not self.stopping.is_set():
                self._spawn(
                    listen(
                        self.runtime.settings.database.url,
                        self.claims.wake,
                        on_change=self.claims.changed,
                        on_gone=self._gone_elsewhere,
                        on_replicas=self._recount_replicas,
                    )
                )
                self._spawn(self._recheck_setup())
                await self.claims.run(self.stopping)
        finally:
            await self._shutdown(server, serving)

    def stop(self) -> None:
        if not self.stopping.is_set():
            logger.info(
                "stopping: no new claims; in-flight work gets {}s",
                self.runtime.settings.controller.shutdown_grace_seconds,
            )
            self.stopping.set()
            self.claims.wake.set()

    async def _start(self) -> None:
        """Register, queue every organization, fill the cache: retried until it works."""
        while not self.stopping.is_set():
            if await self.guard.run("start", self._start_once):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), DOWN_RETRY_SECONDS)

    async def _start_once(self) -> bool:
        if not await self._check_setup():
            return False
        await self.jobs.heartbeat()
        async with self.runtime.engine.begin() as conn:
            await queue.ensure_rows(conn)
        await report_findings(self.runtime.engine)
        async with self.runtime.engine.connect() as conn:
            self.cache.watch_phones(await has_phone_numbers(conn))
        touched = await self.cache.relist()
        self.metrics.last_relist.set_to_current_time()
        self.health.vapi_answered()
        await self.jobs.mark_due(touched, lane=Lane.BULK)  # the first listing touches all
        logger.info(
            "started as {}: {} assistants, {} tools observed",
            self.replica_id,
            len(self.cache.state.assistants),
            len(self.cache.state.tools),
        )
        return True

    async def _check_setup(self) -> bool:
        """The set-up check, its verdict handed to ``Health``; True when all is in place."""
        async with self.runtime.engine.connect() as conn:
            problem = await setup_problem(conn)
        self.health.set_up(problem)
        return problem is None

    async def _recheck_setup(self) -> None:
        """A set-up problem met after the start (a part's ``PlatformShapeError``) is checked
        again every few seconds until it is fixed, so readiness recovers by itself."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), DOWN_RETRY_SECONDS)
            if self.health.set_up_wrong and not self.stopping.is_set():
                await self.guard.run("set-up check", self._check_setup)

    async def _shutdown(
        self, server: HealthServer | None, serving: asyncio.Task[object] | None
    ) -> None:
        grace = self.runtime.settings.controller.shutdown_grace_seconds
        began = time.monotonic()
        claims = await self.claims.drain(grace)
        await self.jobs.stop(max(grace - (time.monotonic() - began), JOBS_GRACE_SECONDS))
        self.claims.chain.written.flush()  # the writes since the last summary line
        for task in list(self._tasks):
            if task is not serving:
                task.cancel()

        async def leave() -> None:
            async with self.runtime.engine.begin() as conn:
                await queue.release(conn, claims)
                await queue.leave(conn, replica_id=self.replica_id)

        await self.guard.run("shutdown", leave)
        if server is not None and serving is not None:
            server.should_exit = True
            await serving
        await asyncio.gather(*self._tasks, return_exceptions=True)
        logger.info("stopped")

    async def _apply_settings(self, before: Settings, fresh: Settings) -> None:
        self.runtime.settings = fresh
        if fresh.vapi != before.vapi:
            self.jobs.share_rate()
        if fresh.controller.concurrency != before.controller.concurrency:
            await self.claims.slots.resize(fresh.controller.concurrency)
        self.health.stall_seconds = fresh.controller.stall_seconds
        self.alerter.settings = fresh.alerting
        self.alerter.sinks = Sinks.from_settings(fresh.alerting)
        if fresh.controller != before.controller:
            await self.jobs.mark_due(None, lane=Lane.BULK)

    def _gone_elsewhere(self, payload: str) -> None:
        """A replica deleted an object in Vapi: out of this cache now, its organization due."""
        resource, _, vapi_id = payload.partition(":")
        if resource in ("assistant", "tool") and vapi_id:
            touched = self.cache.forget("assistant" if resource == "assistant" else "tool", vapi_id)
            if touched:
                mark = partial(self.jobs.mark_due, touched, lane=Lane.INTERACTIVE)
                self._spawn(self.guard.run("gone", mark))

    def _reload_now(self) -> None:
        if self.reloader is not None:
            reloader = self.reloader
            self._spawn(self.guard.run("reload", lambda: reloader.check(force=True)))

    def _recount_replicas(self) -> None:
        """A replica joined or left: count them (and share the rate) now, not at the next
        heartbeat, so replicas started together never overrun the budget for long."""
        self._spawn(self.guard.run("heartbeat", self.jobs.heartbeat))

    def _spawn(self, work: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        """A task the daemon keeps a reference to until it ends."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
