"""The daemon's periodic jobs, on APScheduler (the one scheduler): watch Vapi (polls and
relists), heartbeat and renew leases (and report this daemon's version, mode and pause),
sweep for new organizations, scan security findings, reload the config, evaluate and deliver
alerts, export each organization's state, trim the audit log to ``[audit] keep_days``.

Each job runs through the daemon's ``Guard``. ``stop`` stops the scheduler and then waits
for the jobs still running, so none (a heartbeat, say) outlives the shutdown that follows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from loguru import logger

from controller.alerting.alerter import Alerter
from controller.core.keys import WorkKey
from controller.daemon.claims import ClaimLoop
from controller.daemon.guard import Guard
from controller.daemon.health import Health
from controller.daemon.metrics import Metrics
from controller.daemon.reload import Reloader
from controller.reconcile.findings import report_findings
from controller.reconcile.observe import ObservedCache
from controller.reconcile.runtime import Runtime
from controller.version import package_version
from desired_state import queue, records
from desired_state.findings import PER_ORG_VAPI_KEY
from desired_state.load import load_state_counts
from desired_state.queue import Lane
from desired_state.views import load_org_states, load_queue_stats

Job = Callable[[], Awaitable[None]]
STATES_INTERVAL_SECONDS = 30.0
"""Each organization's state is read for /metrics this often (one row per organization)."""
SUMMARY_INTERVAL_SECONDS = 10.0
"""Organizations synced by writing are summed into one INFO line this often."""
AUDIT_TRIM_INTERVAL_SECONDS = 3600.0

HEARTBEAT_MAX_SECONDS = 5.0
"""The heartbeat (lease renewal, and the count of live replicas each shares the request
budget with) runs at least this often: a replica that joins is counted by the others within
this long, so together they overrun the budget only that long."""


class Jobs:
    def __init__(
        self,
        *,
        runtime: Runtime,
        cache: ObservedCache,
        claims: ClaimLoop,
        health: Health,
        metrics: Metrics,
        guard: Guard,
        alerter: Alerter,
        reloader: Reloader | None,
        replica_id: str,
    ) -> None:
        self.runtime = runtime
        self.cache = cache
        self.claims = claims
        self.health = health
        self.metrics = metrics
        self.guard = guard
        self.alerter = alerter
        self.reloader = reloader
        self.replica_id = replica_id
        self.live_replicas = 1
        self._scheduler = AsyncIOScheduler()
        self._relisted_at = time.monotonic()  # the start-up listing
        self._running: set[asyncio.Task[None]] = set()
        self._reloads = (0, 0)
        metrics.bind(
            ready=lambda: 1.0 if health.readiness()[0] else 0.0,
            rate_limit_wait=lambda: runtime.client.limiter.waited_seconds,
        )
        metrics.before_scrape = self.read_queue

    def start(self) -> None:
        settings = self.runtime.settings
        poll = settings.vapi.poll_interval_seconds
        beat = min(max(settings.controller.lease_seconds / 3, 0.5), HEARTBEAT_MAX_SECONDS)
        resync = settings.controller.resync_interval_seconds
        jobs: tuple[tuple[str, Job, float, float], ...] = (
            ("poll", self.poll_vapi, poll, poll * 0.1),
            ("relist", self.relist_vapi, poll, poll * 0.1),
            ("heartbeat", self.heartbeat, beat, 0),
            ("sweep", self.sweep, resync, 0),
            ("findings", self.scan_findings, resync, 0),
            ("reload", self.reload, settings.controller.reload_interval_seconds, 0),
            ("alerts", self.evaluate_alerts, settings.alerting.evaluate_interval_seconds, 0),
            ("delivery", self.deliver_alerts, 1.0, 0),
            ("org_states", self.export_org_states, STATES_INTERVAL_SECONDS, 0),
            ("summary", self.log_summary, SUMMARY_INTERVAL_SECONDS, 0),
            ("audit_retention", self.trim_audit, AUDIT_TRIM_INTERVAL_SECONDS, 60),
        )
        for name, job, every, jitter in jobs:
            self._scheduler.add_job(
                self._tracked(name, job),
                "interval",
                seconds=every,
                jitter=jitter or None,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,  # a busy loop runs late jobs late, never skips them
            )
        self._scheduler.start()

    async def stop(self, grace_seconds: float) -> None:
        """No new runs; those running get ``grace_seconds`` to finish before the scheduler
        stops (which cancels them). A job cut short can leave half its work: an alert sent
        but not marked delivered goes out again from the next replica."""
        if not self._scheduler.running:
            return
        self._scheduler.pause()
        if self._running:
            await asyncio.wait(list(self._running), timeout=grace_seconds)
        self._scheduler.shutdown(wait=False)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _tracked(self, name: str, job: Job) -> Job:
        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                await self.guard.run(name, job)
            finally:
                self._running.discard(task)

        return run

    # -- the jobs ------------------------------------------------------------------------
    async def poll_vapi(self) -> None:
        if self.cache.listed:
            await self._observe(await self.cache.poll())

    async def relist_vapi(self) -> None:
        """A complete listing (the only way to see deletions made in the dashboard), as often
        as ``[vapi] relist_budget_share`` of this replica's rate allows: every poll interval
        for a small account, at most every ``relist_interval_seconds`` for a large one."""
        if not self.cache.listed or time.monotonic() - self._relisted_at < self.relist_period():
            return
        self._relisted_at = time.monotonic()
        await self._observe(await self.cache.relist())
        self.metrics.last_relist.set_to_current_time()

    def relist_period(self) -> float:
        vapi = self.runtime.settings.vapi
        share = self.runtime.client.limiter.rate * vapi.relist_budget_share
        wanted = self.cache.relist_calls / share if share > 0 else vapi.relist_interval_seconds
        return min(max(wanted, vapi.poll_interval_seconds), vapi.relist_interval_seconds)

    async def _observe(self, touched: set[WorkKey]) -> None:
        self.health.vapi_answered()
        drifted = {key for key in touched if key not in self.claims.inflight}
        if drifted:
            self.metrics.drift_detected.inc(len(drifted))
        await self.mark_due(touched, lane=Lane.INTERACTIVE)

    async def heartbeat(self) -> None:
        settings = self.runtime.settings.controller
        lease = settings.lease_seconds
        held = [c for c, _ in self.claims.inflight.values()]
        asked_at = time.monotonic()
        async with self.runtime.engine.begin() as conn:
            live = await queue.heartbeat(conn, replica_id=self.replica_id, live_within=lease)
            await records.report_replica(
                conn,
                replica_id=self.replica_id,
                version=package_version(),
                mode=settings.mode,
                paused=settings.paused,
            )
            lost = await queue.renew(conn, held, lease_seconds=lease)
            due = await queue.due_count(conn)
        self.health.recovered()
        self.claims.renewed({c.key for c in held} - lost, asked_at=asked_at)
        self.live_replicas = live
        self.share_rate()
        self.claims.due_now = due > 0
        self.metrics.replicas.set(live)
        if lost:
            self.metrics.leases_lost.inc(len(lost))

    async def sweep(self) -> None:
        async with self.runtime.engine.begin() as conn:
            await queue.ensure_rows(conn, self.cache.state.tagged_org_ids())

    async def scan_findings(self) -> None:
        found = await report_findings(self.runtime.engine)
        self.metrics.security_findings.labels(PER_ORG_VAPI_KEY).set(found[PER_ORG_VAPI_KEY])

    async def reload(self) -> None:
        if self.reloader is None:
            return
        try:
            await self.reloader.check(force=False)
        finally:  # counted here for SIGHUP reloads too: the watcher keeps the totals
            watcher = self.reloader.watcher
            done, failed = watcher.reloads, watcher.failures
            self.metrics.config_reloads.labels("success").inc(done - self._reloads[0])
            self.metrics.config_reloads.labels("failure").inc(failed - self._reloads[1])
            self._reloads = (done, failed)

    async def read_queue(self) -> None:
        """Before a scrape: the queue as it is now, not as of the last heartbeat."""
        async with self.runtime.engine.connect() as conn:
            stats = await load_queue_stats(conn)
        self.metrics.queue_depth.set(stats.due)
        self.metrics.oldest_due.set(stats.oldest_due_seconds)

    async def export_org_states(self) -> None:
        if self.health.db_ok:
            async with self.runtime.engine.connect() as conn:
                self.metrics.set_org_states(await load_org_states(conn))

    async def trim_audit(self) -> None:
        """Audit rows past ``[audit] keep_days``, in batches; every replica may run it (a
        batch another replica deleted first is simply empty)."""
        keep_days = self.runtime.settings.audit.keep_days
        async with self.runtime.engine.connect() as conn:
            removed = await records.trim_audit(conn, keep_days=keep_days)
        self.metrics.audit_trimmed.inc(removed)
        if removed:
            logger.info("audit log: {} rows older than {} days deleted", removed, keep_days)

    async def log_summary(self) -> None:
        self.claims.chain.written.flush()

    async def evaluate_alerts(self) -> None:
        before = (self.alerter.fired, self.alerter.resolved)
        try:
            if self.health.db_ok:
                await self.alerter.evaluate()
                await self._count_states()
            await self.alerter.evaluate_controller(postgres_up=self.health.db_ok)
        finally:
            self.metrics.alerts_fired.inc(self.alerter.fired - before[0])
            self.metrics.alerts_resolved.inc(self.alerter.resolved - before[1])

    async def deliver_alerts(self) -> None:
        failures = self.alerter.sink_failures
        try:
            await self.alerter.deliver()
        finally:
            self.metrics.sink_failures.inc(self.alerter.sink_failures - failures)

    async def _count_states(self) -> None:
        async with self.runtime.engine.connect() as conn:
            counts = await load_state_counts(conn)
        for state in ("synced", "progressing", "failed", "paused", "blocked"):
            self.metrics.org_states.labels(state).set(counts.get(state, 0))
        self.metrics.unreconciled.set(counts.get("unreconciled", 0))

    # -- shared by the daemon's parts ----------------------------------------------------
    async def mark_due(self, keys: set[WorkKey] | None, *, lane: Lane) -> None:
        """Make work rows due now (every organization's when None), in ``lane``: drift
        somebody may be waiting for is interactive, a re-render of everything is bulk."""
        if keys is not None and not keys:
            return
        async with self.runtime.engine.begin() as conn:
            if keys is not None:
                await queue.ensure_rows(conn, keys)
            await queue.mark_due(conn, keys, lane=lane)

    def share_rate(self) -> None:
        """This replica's share of the account's request budget."""
        vapi, live = self.runtime.settings.vapi, self.live_replicas
        self.runtime.client.limiter.set_rate(
            vapi.rate_limit_per_second / live, burst=max(vapi.burst // live, 1)
        )
