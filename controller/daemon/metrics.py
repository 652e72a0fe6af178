"""Prometheus metrics, ``vapi_reconciler_*``, in the controller-runtime tradition. Labels are
bounded (routes, states, results): never an id, never anything secret."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "vapi_reconciler"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            f"{PREFIX}_reconcile_total", "Reconciles by result.", ["result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Time to reconcile one organization.",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Work rows due now.", registry=r)
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
        self.rate_limit_wait = Gauge(
            f"{PREFIX}_rate_limit_wait_seconds",
            "Total time spent waiting for the rate budget.",
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
        self.ready = Gauge(f"{PREFIX}_ready", "1 when Postgres and Vapi answer.", registry=r)
        self.alerts_fired = Counter(f"{PREFIX}_alerts_fired_total", "Incidents opened.", registry=r)
        self.alerts_resolved = Counter(
            f"{PREFIX}_alerts_resolved_total", "Incidents resolved.", registry=r
        )
        self.sink_failures = Counter(
            f"{PREFIX}_alert_sink_failures_total",
            "Alert deliveries that failed (retried later).",
            registry=r,
        )

        self.security_findings = Gauge(
            f"{PREFIX}_security_findings",
            "Security findings by kind (per-organization Vapi keys in integrations).",
            ["kind"],
            registry=r,
        )

    def observe_vapi(self, method: str, route: str, status: str, seconds: float) -> None:
        self.vapi_requests.labels(method, route, status).inc()
        self.vapi_seconds.labels(method, route).observe(seconds)
