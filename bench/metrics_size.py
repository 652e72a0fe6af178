"""What the per-organization state gauge costs: the /metrics page's size and render time with
one ``vapi_reconciler_organization_state`` series per organization.

    .venv/bin/python -m bench.metrics_size --orgs 100000
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from prometheus_client import CollectorRegistry, generate_latest

from controller.daemon.metrics import Metrics

STATES = ("synced", "progressing", "failed", "paused", "blocked", "pending")


def measure(orgs: int, *, rounds: int = 5) -> dict[str, float]:
    metrics = Metrics(CollectorRegistry())
    base = len(generate_latest(metrics.registry))
    metrics.set_org_states({uuid.uuid4(): STATES[n % len(STATES)] for n in range(orgs)})
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        page = generate_latest(metrics.registry)
        timings.append(time.perf_counter() - started)
    return {
        "orgs": orgs,
        "page_bytes_without": base,
        "page_bytes": len(page),
        "bytes_per_series": (len(page) - base) / max(orgs, 1),
        "render_seconds_median": statistics.median(timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=100_000)
    args = parser.parse_args()
    for key, value in measure(args.orgs).items():
        print(f"{key:>24}: {value:,.4f}" if isinstance(value, float) else f"{key:>24}: {value:,}")


if __name__ == "__main__":
    main()
