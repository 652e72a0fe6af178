"""Benchmarks: the real daemon against the simulator served on a loopback port in its own
process, with the simulator's latency and rate limit set per scenario, Postgres seeded in
bulk. Each scenario prints a table and writes ``bench/results/<scenario>.json``.

    .venv/bin/python -m bench.run cold-start --orgs 2000
    .venv/bin/python -m bench.run steady-state --orgs 10000
    .venv/bin/python -m bench.run change-latency --orgs 50 --samples 100

Postgres: a throwaway database on the server of ``DATABASE_URL``, or an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text

from desired_state.embedded import embedded_postgres, scratch_database
from desired_state.engine import async_engine, sqlalchemy_url
from desired_state.migrate import migrate
from desired_state.sample import seed_clinics

KEY = "bench-key-0123456789"
RESULTS = Path(__file__).resolve().parent / "results"
TOOLS = 6
PAGE_CAP = 100
WRITES = ("POST", "PATCH", "DELETE")


@dataclass
class Bench:
    url: str
    sim: str
    sim_pid: int
    engine: Engine
    workdir: Path

    def sim_get(self, path: str) -> Any:
        return httpx.get(f"{self.sim}{path}", timeout=60).json()

    def faults(self, **values: Any) -> None:
        httpx.post(f"{self.sim}/_sim/faults", json=values).raise_for_status()

    def requests(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for row in self.sim_get("/_sim/stats")["requests"]:
            counts[f"{row['method']} {row['route']} {row['status']}"] += row["count"]
        return counts

    def synced(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("select count(*) from reconciler.org_status where state = 'synced'")
                ).scalar_one()
            )

    def fall_due(self) -> None:
        """Every organization's resync falls due now: the densest possible pass."""
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "update reconciler.work_items set due_at = now() "
                    "where org_id <> '00000000-0000-0000-0000-000000000000'"
                )
            )
            conn.execute(text("select pg_notify('vapi_reconciler', '*')"))

    def visited_since(self, moment: float) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "select count(*) from reconciler.work_items "
                        "where updated_at >= to_timestamp(:t) and lease_owner is null "
                        "and org_id <> '00000000-0000-0000-0000-000000000000'"
                    ),
                    {"t": moment},
                ).scalar_one()
            )


def listings_in(counts: Counter[str]) -> int:
    """Calls of the drift poll (and relist): GETs of a whole collection."""
    return sum(n for k, n in counts.items() if k.startswith(("GET /assistant ", "GET /tool ")))


def writes_in(counts: Counter[str]) -> int:
    return sum(
        n for k, n in counts.items() if k.split()[0] in WRITES and k.split()[-1].startswith("2")
    )


@contextmanager
def bench(orgs: int, *, rate: float | None, latency: float, burst: int) -> Iterator[Bench]:
    with ExitStack() as stack:
        server = os.environ.get("DATABASE_URL")
        if not server:
            data = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pg-"))
            server = stack.enter_context(embedded_postgres(Path(data)))
        url = stack.enter_context(scratch_database(server, prefix="vapi_reconciler_bench"))
        migrate(url, with_platform_schema=True)
        asyncio.run(_seed(url, orgs))
        args = [
            sys.executable,
            "-m",
            "controller.simulator",
            "--key",
            KEY,
            "--latency",
            str(latency),
            "--burst",
            str(burst),
            "--page-cap",
            str(PAGE_CAP),
        ]
        if rate:
            args += ["--rate", str(rate)]
        sim = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        stack.callback(sim.wait, 10)
        stack.callback(sim.terminate)
        assert sim.stdout is not None
        sim_url = sim.stdout.readline().split()[-1]
        engine = create_engine(sqlalchemy_url(url))
        stack.callback(engine.dispose)
        yield Bench(
            url, sim_url, sim.pid, engine, Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )


async def _seed(url: str, orgs: int) -> None:
    engine = async_engine(url, pool_size=1)
    async with engine.begin() as conn:
        for start in range(0, orgs, 1000):
            await seed_clinics(conn, min(1000, orgs - start), start=start)
    await engine.dispose()


@contextmanager
def daemon(
    b: Bench,
    *,
    rate: float,
    burst: int,
    concurrency: int,
    resync: float = 3600,
    name: str = "bench",
) -> Iterator[subprocess.Popen[str]]:
    config = b.workdir / f"{name}.toml"
    config.write_text(
        f"[vapi]\nrate_limit_per_second = {rate}\nburst = {burst}\npoll_interval_seconds = 10\n"
        f"[controller]\nconcurrency = {concurrency}\nresync_interval_seconds = {resync}\n"
        f'resync_jitter = 0.0\n[server]\nlisten = "127.0.0.1:0"\n'
    )
    env = {
        **os.environ,
        "DATABASE_URL": b.url,
        "VAPI_BASE_URL": b.sim,
        "VAPI_PRIVATE_KEY": KEY,
        "BACKEND_URL": "https://backend.bench.example",
    }
    RESULTS.mkdir(exist_ok=True)
    log = (RESULTS / f"{name}.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller",
            "--log-level",
            "INFO",
            "run",
            "--config",
            str(config),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=120)
        log.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            sys.exit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def cold_start(args: argparse.Namespace) -> dict[str, Any]:
    minimum = TOOLS + 2 * args.orgs
    with bench(args.orgs, rate=args.rate, latency=args.latency, burst=args.burst) as b:
        start, started = time.monotonic(), time.time()
        with daemon(b, rate=args.rate, burst=args.burst, concurrency=args.concurrency) as d:
            wait_for(
                lambda: writes_in(b.requests()) >= minimum and b.synced() == args.orgs,
                args.timeout,
                "convergence",
            )
            wall = time.monotonic() - start
            rss = peak_rss_mb(d.pid)
            daemon_cpu = cpu_seconds(d.pid)
        counts = b.requests()
        sim_cpu = cpu_seconds(b.sim_pid)
        stamps = [w["at"] for w in b.sim_get("/_sim/writes")]
    calls = sum(counts.values())
    throttled = sum(n for k, n in counts.items() if k.endswith(" 429"))
    floor = minimum / args.rate
    return {
        "scenario": "cold-start",
        "orgs": args.orgs,
        "rate": args.rate,
        "latency_s": args.latency,
        "wall_s": round(wall, 2),
        "floor_s": round(floor, 2),
        "wall_over_floor": round(wall / floor, 3),
        "start_to_first_write_s": round(min(stamps) - started, 2),
        "first_to_last_write_s": round(max(stamps) - min(stamps), 2),
        "write_span_over_floor": round((max(stamps) - min(stamps)) / floor, 3),
        "writes": writes_in(counts),
        "minimum_writes": minimum,
        "writes_over_minimum": round(writes_in(counts) / minimum, 3),
        "calls": calls,
        "calls_by_method_status": dict(sorted(counts.items())),
        "daemon_cpu_s": round(daemon_cpu, 2),
        "simulator_cpu_s": round(sim_cpu, 2),
        "share_429": round(throttled / calls, 4),
        "peak_rss_mb": round(rss, 1),
    }


def steady_state(args: argparse.Namespace) -> dict[str, Any]:
    """Converge fast (no limits), then measure one full resync pass at the given rate."""
    minimum = TOOLS + 2 * args.orgs
    with bench(args.orgs, rate=None, latency=0.0, burst=args.burst) as b:
        with daemon(b, rate=5000, burst=200, concurrency=32) as d:
            setup = wait_for(
                lambda: b.synced() == args.orgs and writes_in(b.requests()) >= minimum,
                args.timeout,
                "setup convergence",
            )
            b.faults(latency_seconds=args.latency, rate_limit_per_second=args.rate)
            time.sleep(2.0)
            before, cpu, start = b.requests(), cpu_seconds(d.pid), time.time()
            b.fall_due()
            took = wait_for(lambda: b.visited_since(start) >= args.orgs, 600, "a full resync pass")
            after, cpu_after = b.requests(), cpu_seconds(d.pid)
            rss = peak_rss_mb(d.pid)
        pass_calls = after - before
    with bench(args.orgs, rate=args.rate, latency=args.latency, burst=args.burst) as b2:
        observe = cold_observe(b2, args, minimum)
    return {
        "scenario": "steady-state",
        "orgs": args.orgs,
        "assistants": 2 * args.orgs,
        "rate": args.rate,
        "latency_s": args.latency,
        "setup_s": round(setup, 1),
        "pass_s": round(took, 1),
        "vapi_calls_per_pass": sum(pass_calls.values()),
        "of_which_poll_listings": listings_in(pass_calls),
        "calls_by_method_status": dict(sorted(pass_calls.items())),
        "writes_per_pass": writes_in(pass_calls),
        "cpu_s_per_pass": round(cpu_after - cpu, 2),
        "peak_rss_mb": round(rss, 1),
        **observe,
    }


def cold_observe(b: Bench, args: argparse.Namespace, minimum: int) -> dict[str, Any]:
    """A fresh daemon over an already converged account: the calls that build its cache."""
    with daemon(b, rate=5000, burst=200, concurrency=32, name="setup"):
        wait_for(
            lambda: b.synced() == args.orgs and writes_in(b.requests()) >= minimum,
            args.timeout,
            "setup convergence",
        )
    before = b.requests()
    with daemon(b, rate=args.rate, burst=args.burst, concurrency=args.concurrency, name="fresh"):
        wait_for(lambda: listings_in(b.requests() - before) > 0, 60, "first listing")
        time.sleep(2 * (2 * args.orgs / PAGE_CAP) / args.rate + 2)
    listing = b.requests() - before
    return {
        "cold_observe_calls": sum(listing.values()),
        "cold_observe_target": math.ceil(2 * args.orgs / PAGE_CAP) + 3,
    }


def change_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Agent row committed -> the PATCH received by Vapi, one change at a time, daemon idle."""
    with bench(args.orgs, rate=args.rate, latency=args.latency, burst=args.burst) as b:
        with b.engine.connect() as conn:
            agents = [row[0] for row in conn.execute(text("select id from agents order by id"))]
        with daemon(b, rate=args.rate, burst=args.burst, concurrency=args.concurrency):
            wait_for(lambda: b.synced() == args.orgs, args.timeout, "convergence")
            time.sleep(1.0)
            samples = []
            for n in range(args.samples):
                before = len(b.sim_get("/_sim/writes"))
                with b.engine.begin() as conn:
                    conn.execute(
                        text("update agents set system_prompt = :p where id = :id"),
                        {"p": f"Prompt revision {n}", "id": agents[n % len(agents)]},
                    )
                committed = time.time()
                wait_for(partial(_more_writes, b, before), 30, "the PATCH")
                samples.append(b.sim_get("/_sim/writes")[before]["at"] - committed)
    samples.sort()
    return {
        "scenario": "change-latency",
        "orgs": args.orgs,
        "samples": len(samples),
        "rate": args.rate,
        "latency_s": args.latency,
        "p50_ms": round(1000 * samples[len(samples) // 2], 1),
        "p99_ms": round(1000 * samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
        "min_ms": round(1000 * samples[0], 1),
        "max_ms": round(1000 * samples[-1], 1),
    }


def _more_writes(b: Bench, than: int) -> bool:
    return len(b.sim_get("/_sim/writes")) > than


SCENARIOS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "cold-start": cold_start,
    "steady-state": steady_state,
    "change-latency": change_latency,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--orgs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="simulator and client req/s")
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05, help="simulator seconds/request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    result = SCENARIOS[args.scenario](args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.scenario}.json").write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
