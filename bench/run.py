"""Benchmarks against the simulator in its own process on a loopback port.

    .venv/bin/python -m bench.run cold-start --orgs 500 --rate 100 --latency 0.05
    .venv/bin/python -m bench.run change-latency --orgs 50 --samples 100

Each scenario prints a table and writes ``bench/results/<scenario>.json``. Postgres: the
server of ``DATABASE_URL`` (a throwaway database on it) or an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from desired_state.embedded import embedded_postgres, scratch_database
from desired_state.engine import async_engine
from desired_state.migrate import migrate
from desired_state.sample import seed_clinics

KEY = "bench-key"
RESULTS = Path(__file__).resolve().parent / "results"
TOOLS = 6


@contextmanager
def simulator(*, rate: float, latency: float, burst: int) -> Iterator[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.simulator",
            "--key",
            KEY,
            "--rate",
            str(rate),
            "--latency",
            str(latency),
            "--burst",
            str(burst),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split()[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def database() -> Iterator[str]:
    with ExitStack() as stack:
        server = os.environ.get("DATABASE_URL")
        if not server:
            data = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pg-"))
            server = stack.enter_context(embedded_postgres(Path(data)))
        url = stack.enter_context(scratch_database(server, prefix="vapi_reconciler_bench"))
        migrate(url, with_platform_schema=True)
        yield url


async def seed(url: str, orgs: int) -> None:
    engine = async_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await seed_clinics(conn, orgs)
    await engine.dispose()


def controller(url: str, sim: str, config: Path, *args: str) -> tuple[float, int]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "VAPI_BASE_URL": sim,
        "VAPI_PRIVATE_KEY": KEY,
        "BACKEND_URL": "https://backend.bench.example",
    }
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller",
            "--log-level",
            "WARNING",
            *args,
            "--config",
            str(config),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 2):
        sys.exit(f"controller failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done.returncode


def sim_requests(sim: str) -> Counter[str]:
    stats = httpx.get(f"{sim}/_sim/stats").json()
    counts: Counter[str] = Counter()
    for row in stats["requests"]:
        counts[f"{row['method']} {row['status']}"] += row["count"]
    return counts


def cold_start(args: argparse.Namespace) -> dict[str, Any]:
    minimum_writes = TOOLS + 2 * args.orgs
    with (
        database() as url,
        simulator(rate=args.rate, latency=args.latency, burst=args.burst) as sim,
    ):
        asyncio.run(seed(url, args.orgs))
        config = Path(tempfile.mkdtemp()) / "config.toml"
        config.write_text(
            f"[vapi]\nrate_limit_per_second = {args.rate}\nburst = {args.burst}\n"
            f"[controller]\nconcurrency = {args.concurrency}\n"
        )
        startup, _ = controller(url, sim, config, "status", "--json")
        wall, code = controller(url, sim, config, "reconcile")
        first = sim_requests(sim)
        second_wall, _ = controller(url, sim, config, "reconcile")
        second = sim_requests(sim) - first
    writes = sum(
        n
        for k, n in first.items()
        if k.split()[0] in ("POST", "PATCH", "DELETE") and k.split()[1].startswith("2")
    )
    calls = sum(first.values())
    throttled = sum(n for k, n in first.items() if k.endswith(" 429"))
    floor = minimum_writes / args.rate
    return {
        "scenario": "cold-start",
        "orgs": args.orgs,
        "rate": args.rate,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "exit_code": code,
        "wall_s": round(wall, 2),
        "process_startup_s": round(startup, 2),
        "floor_s": round(floor, 2),
        "wall_over_floor": round(wall / floor, 3),
        "writes": writes,
        "minimum_writes": minimum_writes,
        "writes_over_minimum": round(writes / minimum_writes, 3),
        "calls": calls,
        "calls_by_method_status": dict(sorted(first.items())),
        "throttled_429": throttled,
        "share_429": round(throttled / calls, 4),
        "second_pass_wall_s": round(second_wall, 2),
        "second_pass_calls": dict(sorted(second.items())),
    }


@contextmanager
def daemon(url: str, sim: str, config: Path) -> Iterator[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "VAPI_BASE_URL": sim,
        "VAPI_PRIVATE_KEY": KEY,
        "BACKEND_URL": "https://backend.bench.example",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller",
            "--log-level",
            "WARNING",
            "run",
            "--config",
            str(config),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


def sim_writes(sim: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{sim}/_sim/writes").json())


def wait_for(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit("timed out")
        time.sleep(0.01)


def change_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Agent row committed -> the PATCH received by Vapi, one change at a time, daemon idle."""
    from sqlalchemy import create_engine, text

    from desired_state.engine import sqlalchemy_url

    with (
        database() as url,
        simulator(rate=args.rate, latency=args.latency, burst=args.burst) as sim,
    ):
        asyncio.run(seed(url, args.orgs))
        config = Path(tempfile.mkdtemp()) / "config.toml"
        config.write_text(
            f"[vapi]\nrate_limit_per_second = {args.rate}\nburst = {args.burst}\n"
            f"[controller]\nconcurrency = {args.concurrency}\nresync_interval_seconds = 3600\n"
            f'[server]\nlisten = "127.0.0.1:0"\n'
        )
        engine = create_engine(sqlalchemy_url(url))
        with engine.connect() as conn:
            agents = [row[0] for row in conn.execute(text("select id from agents order by id"))]
        with daemon(url, sim, config):
            wait_for(lambda: len(sim_writes(sim)) >= TOOLS + 2 * args.orgs, 600)
            time.sleep(1.0)
            samples = []
            for n in range(args.samples):
                before = len(sim_writes(sim))
                with engine.begin() as conn:
                    conn.execute(
                        text("update agents set system_prompt = :p where id = :id"),
                        {"p": f"Prompt revision {n}", "id": agents[n % len(agents)]},
                    )
                committed = time.time()
                wait_for(lambda b=before: len(sim_writes(sim)) > b, 30)
                samples.append(sim_writes(sim)[before]["at"] - committed)
        engine.dispose()
    samples.sort()
    return {
        "scenario": "change-latency",
        "orgs": args.orgs,
        "samples": len(samples),
        "rate": args.rate,
        "latency_s": args.latency,
        "p50_ms": round(1000 * samples[len(samples) // 2], 1),
        "p99_ms": round(1000 * samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
        "max_ms": round(1000 * samples[-1], 1),
        "min_ms": round(1000 * samples[0], 1),
    }


SCENARIOS = {"cold-start": cold_start, "change-latency": change_latency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--orgs", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0, help="simulator and client req/s")
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05, help="simulator seconds/request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    result = SCENARIOS[args.scenario](args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.scenario}.json").write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
