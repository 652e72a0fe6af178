"""Prometheus metrics, ``vapi_reconciler_*``, in the controller-runtime tradition and
Prometheus naming: counters end in ``_total``, durations are ``_seconds``, no ``_created``
series. Values that would lag if pushed by a job (readiness, the queue, the rate-limit wait)
are read when Prometheus scrapes.

Labels are bounded (routes, states, results, parts) with one deliberate exception:
``organization_state`` carries ``org_id``, one series per organization (docs/operations.md
gives its cost). Never a name, an agent, a Vapi id or anything secret. This module must not
do I/O itself: the daemon hands it callbacks (``refresh`` before a scrape, ``bind``).
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Awaitable, Callable, Iterator, Mapping
from uuid import UUID

from loguru import logger
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.version import package_version

PREFIX = "vapi_reconciler"
REFRESH_TIMEOUT_SECONDS = 2.0

# Process-wide: a `_created` series per counter and histogram doubles their cost for nothing.
disable_created_metrics()  # type: ignore[no-untyped-call]


Read = Callable[[], float]


class _ScrapeTime(Collector):
    """Families whose value is read at scrape time from a callback the daemon binds."""

    def __init__(self) -> None:
        self.ready: Read = lambda: 0.0
        self.rate_limit_wait: Read = lambda: 0.0
        self.org_states: Mapping[UUID, str] = {}

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            f"{PREFIX}_ready", "1 when this replica is ready (Postgres, schema, Vapi answer)."
        )
        ready.add_metric([], self.ready())
        yield ready
        yield CounterMetricFamily(
            f"{PREFIX}_rate_limit_wait_seconds",
            "Time spent waiting for the rate budget.",
            value=self.rate_limit_wait(),
        )
        per_org = GaugeMetricFamily(
            f"{PREFIX}_organization_state",
            "1 for each organization's current state (pending: desired, never reconciled).",
            labels=["org_id", "state"],
        )
        for org_id, state in self.org_states.items():
            per_org.add_metric([str(org_id), state], 1.0)
        yield per_org


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.scrape_time = _ScrapeTime()
        r.register(self.scrape_time)
        self.before_scrape: Callable[[], Awaitable[None]] | None = None
        """Set by the daemon: reads what ``refresh`` puts in the gauges below."""

        self.build_info = Gauge(
            f"{PREFIX}_build_info",
            "Always 1; the labels say which build runs.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(package_version(), platform.python_version()).set(1)
        self.reconciles = Counter(
            f"{PREFIX}_reconcile_total", "Reconciles by result.", ["result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Time to reconcile one organization.",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Work rows due now and not held (read at scrape).", registry=r
        )
        self.oldest_due = Gauge(
            f"{PREFIX}_queue_oldest_due_seconds",
            "How long the longest-waiting due work row has been due (read at scrape).",
            registry=r,
        )
        self.inflight = Gauge(
            f"{PREFIX}_inflight", "Reconciles running on this replica.", registry=r
        )
        self.vapi_requests = Counter(
            f"{PREFIX}_vapi_requests_total",
            "Vapi requests by method, route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.vapi_seconds = Histogram(
            f"{PREFIX}_vapi_request_duration_seconds",
            "Vapi request latency.",
            ["method", "route"],
            registry=r,
        )
        self.drift_detected = Counter(
            f"{PREFIX}_drift_detected_total",
            "Organizations whose Vapi state changed behind the controller.",
            registry=r,
        )
        self.writes = Counter(
            f"{PREFIX}_vapi_writes_total", "Vapi writes that succeeded.", registry=r
        )
        self.last_relist = Gauge(
            f"{PREFIX}_last_relist_timestamp_seconds",
            "Unix time of the last complete listing of Vapi.",
            registry=r,
        )
        self.org_states = Gauge(
            f"{PREFIX}_organizations", "Organizations by state.", ["state"], registry=r
        )
        self.unreconciled = Gauge(
            f"{PREFIX}_unreconciled_organizations",
            "Organizations out of sync and not paused.",
            registry=r,
        )
        self.internal_errors = Counter(
            f"{PREFIX}_internal_errors_total",
            "Unexpected exceptions, by the part of the daemon that caught them.",
            ["part"],
            registry=r,
        )
        self.leases_lost = Counter(
            f"{PREFIX}_leases_lost_total", "Claims fenced out by another replica.", registry=r
        )
        self.replicas = Gauge(
            f"{PREFIX}_replicas_live", "Live replicas sharing the budget.", registry=r
        )
        self.config_reloads = Counter(
            f"{PREFIX}_config_reloads_total",
            "Config file reloads: success (new settings in force) or failure (kept the old).",
            ["result"],
            registry=r,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        self.alerts_fired = Counter(f"{PREFIX}_alerts_fired_total", "Incidents opened.", registry=r)
        self.alerts_resolved = Counter(
            f"{PREFIX}_alerts_resolved_total", "Incidents resolved.", registry=r
        )
        self.sink_failures = Counter(
            f"{PREFIX}_alert_sink_failures_total",
            "Alert deliveries that failed (retried later).",
            registry=r,
        )
        self.audit_trimmed = Counter(
            f"{PREFIX}_audit_rows_deleted_total",
            "Audit rows deleted for being older than [audit] keep_days.",
            registry=r,
        )
        self.security_findings = Gauge(
            f"{PREFIX}_security_findings",
            "Security findings by kind (per-organization Vapi keys in integrations).",
            ["kind"],
            registry=r,
        )

    def bind(self, *, ready: Read, rate_limit_wait: Read) -> None:
        """The callbacks read at scrape time."""
        self.scrape_time.ready = ready
        self.scrape_time.rate_limit_wait = rate_limit_wait

    def set_org_states(self, states: Mapping[UUID, str]) -> None:
        self.scrape_time.org_states = states

    async def refresh(self) -> None:
        """Before a scrape: let the daemon read what lags otherwise (the queue). A slow or
        down Postgres leaves the last values; the scrape is never failed by it."""
        if self.before_scrape is None:
            return
        try:
            await asyncio.wait_for(self.before_scrape(), REFRESH_TIMEOUT_SECONDS)
        except Exception as exc:  # an outage: the health checks report it, not the scrape
            logger.debug("metrics refresh skipped: {}", type(exc).__name__)

    def observe_vapi(self, method: str, route: str, status: str, seconds: float) -> None:
        self.vapi_requests.labels(method, route, status).inc()
        self.vapi_seconds.labels(method, route).observe(seconds)
