"""What the validators of ``./dev deploy-check`` can't see: the CRDs (ServiceMonitor,
PrometheusRule), the configs the manifests carry, and the Grafana dashboard's queries."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from controller.config import Settings
from controller.daemon.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"


def manifest(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / name).read_text())
    return loaded


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_metrics() -> set[str]:
    """Every series name the daemon exports (labelled families have no samples yet)."""
    registry = CollectorRegistry()
    Metrics(registry)
    return {f.name + suffix for f in registry.collect() for suffix in SUFFIXES[f.type]}


def test_the_prometheus_rule_holds_exactly_the_promtool_tested_rules() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())

    assert manifest("prometheusrule.yaml")["spec"]["groups"] == rules["groups"]


def test_the_service_monitor_scrapes_the_services_metrics_port() -> None:
    monitor, service = manifest("servicemonitor.yaml"), manifest("service.yaml")
    deployment = manifest("deployment.yaml")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]

    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics"}
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    assert "metrics" in {p["name"] for p in container["ports"]}


@pytest.mark.parametrize(
    "config",
    [
        tomllib.loads(manifest("configmap.yaml")["data"]["config.toml"]),
        tomllib.loads((DEPLOY / "compose" / "config.toml").read_text()),
    ],
    ids=["k8s-configmap", "compose"],
)
def test_shipped_configs_are_valid_and_serve_probes_beyond_loopback(config: dict[str, Any]) -> None:
    settings = Settings.model_validate(config)

    assert settings.server.listen.startswith("0.0.0.0:")
    assert settings.backend_url.startswith("https://")


def test_every_dashboard_query_parses_and_names_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "vapi-reconciler.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    known = exported_metrics()

    for expr in exprs:
        promql_parser.parse(expr)  # raises on a syntax error
        assert set(re.findall(r"vapi_reconciler_[a-z_]+", expr)) <= known, expr
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_a_broken_query_is_caught() -> None:
    with pytest.raises(ValueError, match=r"."):
        promql_parser.parse("sum(rate(vapi_reconciler_reconcile_total[5m])")
