"""The /metrics page: Prometheus naming, no ``_created`` series, values read at scrape time,
one series per organization for its state, and never a secret."""

from __future__ import annotations

import asyncio
from uuid import UUID

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench.metrics_size import measure
from controller.daemon.metrics import PREFIX, Metrics


def page(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def families(metrics: Metrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(page(metrics))}


def test_every_counter_ends_in_total_and_no_created_series_is_exported() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.reconciles.labels("synced").inc()
    metrics.vapi_requests.labels("GET", "/assistant", "200").inc()
    text = page(metrics)

    assert "_created" not in text
    for line in text.splitlines():
        if line.startswith("# TYPE") and line.endswith(" counter"):
            assert line.split()[2].endswith("_total"), line
    assert all(name.startswith(PREFIX) for name in families(metrics))


def test_durations_are_in_seconds_and_the_rate_limit_wait_is_a_counter() -> None:
    kinds = families(Metrics(CollectorRegistry()))

    assert kinds[f"{PREFIX}_rate_limit_wait_seconds"] == "counter"
    assert kinds[f"{PREFIX}_reconcile_duration_seconds"] == "histogram"
    assert kinds[f"{PREFIX}_vapi_request_duration_seconds"] == "histogram"
    assert f"{PREFIX}_rate_limit_wait_seconds_total 0.0" in page(Metrics(CollectorRegistry()))


def test_build_info_names_the_running_version() -> None:
    text = page(Metrics(CollectorRegistry()))

    assert f'{PREFIX}_build_info{{python="' in text
    assert 'version="' in text


def test_readiness_and_the_rate_limit_wait_are_read_when_prometheus_scrapes() -> None:
    metrics = Metrics(CollectorRegistry())
    state = {"ready": 0.0, "waited": 1.5}
    metrics.bind(ready=lambda: state["ready"], rate_limit_wait=lambda: state["waited"])
    assert f"{PREFIX}_ready 0.0" in page(metrics)

    state.update(ready=1.0, waited=4.25)

    text = page(metrics)
    assert f"{PREFIX}_ready 1.0" in text
    assert f"{PREFIX}_rate_limit_wait_seconds_total 4.25" in text


def test_the_queue_is_read_just_before_a_scrape_and_a_failing_read_keeps_the_last_values() -> None:
    metrics = Metrics(CollectorRegistry())
    depth = iter([7, None])

    async def read_queue() -> None:
        value = next(depth)
        if value is None:
            raise ConnectionError("postgres down")
        metrics.queue_depth.set(value)
        metrics.oldest_due.set(42)

    metrics.before_scrape = read_queue
    asyncio.run(metrics.refresh())
    asyncio.run(metrics.refresh())

    text = page(metrics)
    assert f"{PREFIX}_queue_depth 7.0" in text
    assert f"{PREFIX}_queue_oldest_due_seconds 42.0" in text


def test_each_organization_has_one_series_labelled_with_its_state() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.set_org_states({UUID(int=1): "synced", UUID(int=2): "pending"})

    text = page(metrics)

    assert (
        f'{PREFIX}_organization_state{{org_id="00000000-0000-0000-0000-000000000001",'
        f'state="synced"}} 1.0'
    ) in text
    assert text.count(f"{PREFIX}_organization_state{{") == 2


def test_config_reloads_are_counted_by_result_from_zero() -> None:
    text = page(Metrics(CollectorRegistry()))

    assert f'{PREFIX}_config_reloads_total{{result="success"}} 0.0' in text
    assert f'{PREFIX}_config_reloads_total{{result="failure"}} 0.0' in text


def test_the_per_organization_series_cost_about_a_hundred_bytes_each() -> None:
    cost = measure(1000, rounds=1)

    assert 60 < cost["bytes_per_series"] < 160
