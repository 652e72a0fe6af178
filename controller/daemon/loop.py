"""The daemon: claims due work, runs it with bounded concurrency, keeps the cache, the
replica heartbeat and the settings current, and stops cleanly.

Level-triggered: a work row says "look at this organization", never "do this". Every failure
of Postgres or Vapi is survived by waiting and trying again; nothing is lost because the rows
are durable and a reconcile is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import UUID

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from loguru import logger
from sqlalchemy.exc import DBAPIError

from controller.alerting.alerter import Alerter
from controller.alerting.sinks import Sinks
from controller.core.desired import DesiredState
from controller.core.outcome import OrgOutcome
from controller.core.schedule import SchedulePolicy, next_visit
from controller.daemon.health import Health
from controller.daemon.http import health_app, health_server
from controller.daemon.listener import listen
from controller.daemon.metrics import Metrics
from controller.daemon.reload import ConfigWatcher
from controller.daemon.settle import Finished, Settler
from controller.daemon.work import Worker
from controller.reconcile.converge import Runtime
from controller.reconcile.findings import report_findings
from controller.reconcile.observe import ObservedCache
from controller.reconcile.status import Recorded
from controller.secret import redact
from controller.vapi.errors import VapiError
from desired_state import queue
from desired_state.findings import PER_ORG_VAPI_KEY
from desired_state.load import load_desired, load_state_counts
from desired_state.queue import TOOLS_KEY, Claim, Completion

DOWN_RETRY_SECONDS = 2.0
CLAIM_BATCH = 256
"""Rows claimed at once. Most visits find nothing to do and finish without a Vapi call; only
``concurrency`` organizations at a time do Vapi work, the rest wait their turn in-process."""


class Daemon:
    def __init__(
        self,
        runtime: Runtime,
        *,
        config_path: Path | None,
        metrics: Metrics,
        replica_id: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.replica_id = replica_id or f"replica-{uuid.uuid4().hex[:8]}"
        self.cache = ObservedCache(runtime.client)
        self.worker = Worker(runtime, self.cache)
        self.settler = Settler(runtime.engine)
        self.slots = asyncio.Semaphore(runtime.settings.controller.concurrency)
        self.watcher = ConfigWatcher(config_path, runtime.settings) if config_path else None
        self.alerter = Alerter(
            runtime.engine,
            Sinks.from_settings(runtime.settings.alerting),
            runtime.settings.alerting,
        )
        self.health = Health(self.alerter, self.replica_id)
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.inflight: dict[UUID, tuple[Claim, asyncio.Task[None]]] = {}
        self._live = 1

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, lambda: self._reload(force=True))
        server = health_server(
            health_app(alive=self.health.alive, ready=self.health.readiness, metrics=self.metrics),
            self.runtime.settings.server.listen,
        )
        serving = asyncio.create_task(server.serve())
        scheduler = AsyncIOScheduler()
        listener: asyncio.Task[None] | None = None
        try:
            self._schedule(scheduler)
            scheduler.start()
            await self._start()
            if not self.stopping.is_set():
                listener = asyncio.create_task(
                    listen(self.runtime.settings.database.url, self.wake)
                )
                await self._claim_loop()
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)
            if listener is not None:
                listener.cancel()
            await self._drain()
            server.should_exit = True
            await serving
            logger.info("stopped")

    def stop(self) -> None:
        if not self.stopping.is_set():
            logger.info(
                "stopping: no new claims; in-flight work gets {}s",
                self.runtime.settings.controller.shutdown_grace_seconds,
            )
            self.stopping.set()
            self.wake.set()

    async def _start(self) -> None:
        """Register, queue every organization, fill the cache: retried until it works."""
        while not self.stopping.is_set():
            try:
                await self._heartbeat()
                async with self.runtime.engine.begin() as conn:
                    await queue.ensure_rows(conn)
                await self._scan_findings()
                touched = await self.cache.relist()
                self.health.vapi_ok = True
                await self._mark_due(touched)
                logger.info(
                    "started as {}: {} assistants, {} tools observed",
                    self.replica_id,
                    len(self.cache.state.assistants),
                    len(self.cache.state.tools),
                )
                return
            except (DBAPIError, OSError, VapiError) as exc:
                self.health.failure(exc)
                await self._pause(DOWN_RETRY_SECONDS)

    async def _drain(self) -> None:
        """Finish in-flight work within the grace period, abandon the rest safely."""
        tasks = [task for _, task in self.inflight.values()]
        grace = self.runtime.settings.controller.shutdown_grace_seconds
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        abandoned = [claimed for claimed, _ in self.inflight.values()]
        with contextlib.suppress(DBAPIError, OSError):
            async with self.runtime.engine.begin() as conn:
                await queue.release(conn, abandoned)
                await queue.leave(conn, replica_id=self.replica_id)

    # -- claiming ------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self.stopping.is_set():
            self.health.beat()
            self.wake.clear()
            limit = self._claim_limit()
            if limit:
                try:
                    await self._converge_tools_first()
                    claims = await self._claim(limit)
                except (DBAPIError, OSError) as exc:
                    self.health.failure(exc)
                    await self._pause(DOWN_RETRY_SECONDS)
                    continue
                if len(claims) == limit:
                    continue
            settings = self.runtime.settings
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), settings.controller.idle_poll_seconds)

    def _claim_limit(self) -> int:
        """Claim again once a slot is free: a batch, less what is already held."""
        concurrency = self.runtime.settings.controller.concurrency
        if len(self.inflight) >= concurrency:
            return 0
        return max(CLAIM_BATCH, concurrency) - len(self.inflight)

    async def _converge_tools_first(self) -> None:
        """The account's tools, when due, run alone and before any organization: assistants
        link tool ids, so creating them first saves a relink per assistant."""
        async with self.runtime.engine.begin() as conn:
            claims = await queue.claim(
                conn,
                owner=self.replica_id,
                limit=1,
                tools=True,
                lease_seconds=self.runtime.settings.controller.lease_seconds,
            )
        for claimed in claims:
            await self._work(claimed, DesiredState())

    async def _claim(self, free: int) -> list[Claim]:
        settings = self.runtime.settings.controller
        async with self.runtime.engine.begin() as conn:
            claims = await queue.claim(
                conn, owner=self.replica_id, limit=free, lease_seconds=settings.lease_seconds
            )
        self.health.db_ok = True
        if not claims:
            return claims
        orgs = [c.org_id for c in claims if c.org_id != TOOLS_KEY]
        async with self.runtime.engine.connect() as conn:
            desired = await load_desired(conn, org_ids=orgs)
        for claimed in claims:
            task = asyncio.create_task(self._work(claimed, desired))
            self.inflight[claimed.org_id] = (claimed, task)
            task.add_done_callback(lambda _: self.wake.set())
        self.metrics.inflight.set(len(self.inflight))
        return claims

    async def _work(self, claimed: Claim, desired: DesiredState) -> None:
        reconcile_id = uuid.uuid4().hex[:12]
        started = time.monotonic()
        outcome: OrgOutcome | None = None
        relink = False
        try:
            async with self.slots:
                if claimed.org_id == TOOLS_KEY:
                    outcome, relink = await self.worker.reconcile_tools(reconcile_id)
                else:
                    outcome = await self.worker.reconcile_org(claimed.org_id, desired, reconcile_id)
            visit = next_visit(
                outcome.retry,
                attempts=claimed.attempts,
                policy=self._policy(),
                draw=random.random(),
            )
            error = None if outcome.converged else outcome.message
            self.health.outcome(outcome)
        except (DBAPIError, OSError, VapiError) as exc:
            self.health.failure(exc)
            visit = next_visit(
                "backoff", attempts=claimed.attempts, policy=self._policy(), draw=random.random()
            )
            error = redact(f"{type(exc).__name__}: {exc}")[:2000]
        try:
            recorded = None
            if outcome is not None and claimed.org_id != TOOLS_KEY:
                recorded = Recorded.judged(outcome, desired)
            completion = Completion(claimed, visit.due_in, visit.attempts, error)
            if not await self.settler.settle(Finished(completion, recorded)):
                self.metrics.leases_lost.inc()
                logger.bind(org_id=str(claimed.org_id)).warning(
                    "lease lost to another replica: this outcome is not recorded"
                )
            if relink:
                await self._mark_due(None)
        except (DBAPIError, OSError) as exc:
            self.health.failure(exc)
        finally:
            self.inflight.pop(claimed.org_id, None)
            self.metrics.inflight.set(len(self.inflight))
            self.metrics.reconciles.labels(outcome.state if outcome else "error").inc()
            self.metrics.reconcile_seconds.observe(time.monotonic() - started)
            if outcome is not None:
                self.metrics.writes.inc(outcome.writes)

    # -- periodic jobs -------------------------------------------------------------------
    def _schedule(self, scheduler: AsyncIOScheduler) -> None:
        settings = self.runtime.settings
        poll = settings.vapi.poll_interval_seconds
        relist = settings.vapi.relist_interval_seconds
        beat = max(settings.controller.lease_seconds / 3, 0.5)
        jobs = (
            (self._poll_vapi, poll, poll * 0.1),
            (self._relist_vapi, relist, relist * 0.1),
            (self._heartbeat, beat, 0),
            (self._sweep, settings.controller.resync_interval_seconds, 0),
            (self._scan_findings, settings.controller.resync_interval_seconds, 0),
            (self._check_config, settings.controller.reload_interval_seconds, 0),
            (self._evaluate_alerts, settings.alerting.evaluate_interval_seconds, 0),
            (self._deliver_alerts, 1.0, 0),
        )
        for job, every, jitter in jobs:
            scheduler.add_job(
                job,
                "interval",
                seconds=every,
                jitter=jitter or None,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,  # a busy loop runs late jobs late, never skips them
            )

    async def _poll_vapi(self) -> None:
        if self.cache.listed:
            await self._observe(self.cache.poll)

    async def _relist_vapi(self) -> None:
        if self.cache.listed:
            await self._observe(self.cache.relist)

    async def _observe(self, look: Callable[[], Awaitable[set[UUID]]]) -> None:
        try:
            touched = await look()
            self.health.vapi_answered()
        except VapiError as exc:
            self.health.vapi_ok = False
            logger.warning("observing Vapi failed: {}", exc)
            return
        busy = {org for org in touched if org in self.inflight}
        if touched - busy:
            self.metrics.drift_detected.inc(len(touched - busy))
        await self._mark_due(touched)

    async def _heartbeat(self) -> None:
        try:
            async with self.runtime.engine.begin() as conn:
                live = await queue.heartbeat(
                    conn,
                    replica_id=self.replica_id,
                    live_within=self.runtime.settings.controller.lease_seconds,
                )
                lost = await queue.renew(
                    conn,
                    [c for c, _ in self.inflight.values()],
                    lease_seconds=self.runtime.settings.controller.lease_seconds,
                )
                due = await queue.due_count(conn)
            self.health.db_ok = True
        except (DBAPIError, OSError) as exc:
            self.health.failure(exc)
            return
        self._live = live
        self._share_rate()
        self.metrics.replicas.set(live)
        self.metrics.ready.set(1 if self.health.readiness()[0] else 0)
        self.metrics.rate_limit_wait.set(self.runtime.client.limiter.waited_seconds)
        self.metrics.queue_depth.set(due)
        if lost:
            self.metrics.leases_lost.inc(len(lost))

    async def _evaluate_alerts(self) -> None:
        before = (self.alerter.fired, self.alerter.resolved)
        try:
            if self.health.db_ok:
                await self.alerter.evaluate()
                await self._count_states()
            await self.alerter.evaluate_controller(postgres_up=self.health.db_ok)
        except (DBAPIError, OSError) as exc:
            self.health.failure(exc)
        self.metrics.alerts_fired.inc(self.alerter.fired - before[0])
        self.metrics.alerts_resolved.inc(self.alerter.resolved - before[1])

    async def _deliver_alerts(self) -> None:
        failures = self.alerter.sink_failures
        try:
            await self.alerter.deliver()
        except (DBAPIError, OSError) as exc:
            self.health.failure(exc)
        self.metrics.sink_failures.inc(self.alerter.sink_failures - failures)

    async def _count_states(self) -> None:
        async with self.runtime.engine.connect() as conn:
            counts = await load_state_counts(conn)
        for state in ("synced", "progressing", "failed", "paused", "blocked"):
            self.metrics.org_states.labels(state).set(counts.get(state, 0))
        self.metrics.unreconciled.set(counts.get("unreconciled", 0))

    async def _sweep(self) -> None:
        try:
            async with self.runtime.engine.begin() as conn:
                await queue.ensure_rows(conn, self.cache.state.tagged_org_ids())
        except (DBAPIError, OSError) as exc:
            self.health.failure(exc)

    async def _scan_findings(self) -> None:
        try:
            found = await report_findings(self.runtime.engine)
        except (DBAPIError, OSError) as exc:
            self.health.failure(exc)
            return
        self.metrics.security_findings.labels(PER_ORG_VAPI_KEY).set(found[PER_ORG_VAPI_KEY])

    async def _check_config(self) -> None:
        self._reload(force=False)

    def _reload(self, *, force: bool) -> None:
        if self.watcher is None:
            return
        fresh = self.watcher.changed(force=force)
        if fresh is None:
            return
        before = self.runtime.settings
        self.runtime.settings = fresh
        if fresh.vapi != before.vapi:
            self._share_rate()
        if fresh.controller.concurrency != before.controller.concurrency:
            self.slots = asyncio.Semaphore(fresh.controller.concurrency)  # for work claimed next
        self.alerter.settings = fresh.alerting
        self.alerter.sinks = Sinks.from_settings(fresh.alerting)
        logger.info(
            "config reloaded: paused={} paused_orgs={} mode={} prune={}",
            fresh.controller.paused,
            len(fresh.controller.paused_orgs),
            fresh.controller.mode,
            fresh.controller.prune,
        )
        if fresh.controller != before.controller:
            asyncio.get_running_loop().create_task(self._mark_due(None))

    # -- helpers -------------------------------------------------------------------------
    async def _mark_due(self, org_ids: set[UUID] | None) -> None:
        if org_ids is not None and not org_ids:
            return
        try:
            async with self.runtime.engine.begin() as conn:
                if org_ids is not None:
                    await queue.ensure_rows(conn, org_ids)
                await queue.mark_due(conn, org_ids)
        except (DBAPIError, OSError) as exc:
            self.health.failure(exc)

    def _share_rate(self) -> None:
        """This replica's share of the account's request budget."""
        vapi, live = self.runtime.settings.vapi, self._live
        self.runtime.client.limiter.set_rate(
            vapi.rate_limit_per_second / live, burst=max(vapi.burst // live, 1)
        )

    def _policy(self) -> SchedulePolicy:
        c = self.runtime.settings.controller
        return SchedulePolicy(
            c.resync_interval_seconds,
            c.resync_jitter,
            c.backoff_base_seconds,
            c.backoff_max_seconds,
        )

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
