"""Benchmarks: the real daemon against the simulator served on a loopback port in its own
process, with the simulator's latency and rate limit set per scenario, Postgres seeded in
bulk. Each scenario prints a table and writes ``bench/results/<scenario>.json``.

    .venv/bin/python -m bench.run cold-start --orgs 2000
    .venv/bin/python -m bench.run cold-start --orgs 2000 --replicas 2
    .venv/bin/python -m bench.run cold-start --orgs 2000 --profile
    .venv/bin/python -m bench.run cold-start --orgs 2000 --cpu-profile
    .venv/bin/python -m bench.run steady-state --orgs 10000
    .venv/bin/python -m bench.run change-latency --orgs 50 --samples 100
    .venv/bin/python -m bench.run change-latency --under-load --orgs 2000 --samples 100
    .venv/bin/python -m bench.run chaos --seed 1 --minutes 4 --orgs 40 --replicas 3

Postgres: a throwaway database on the server of ``DATABASE_URL``, or an embedded one.
``--profile`` (cold-start, change-latency) records each daemon with py-spy into
``bench/results/<daemon>.folded`` and prints where its CPU went (``bench/profile.py``);
``--cpu-profile`` (cold-start) samples each daemon by its CPU time from inside
(``bench/cpu_sampler.py``: py-spy counts waiting for a core as busy) into
``bench/results/<daemon>.cpu.folded``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import resource
import shutil
import signal
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
from uuid import UUID

import httpx
from sqlalchemy import Engine, create_engine, text

from bench.profile import format_rows, summarize
from desired_state.embedded import embedded_postgres, scratch_database
from desired_state.engine import async_engine, sqlalchemy_url
from desired_state.migrate import migrate
from desired_state.sample import seed_clinics

KEY = "bench-key-0123456789"
RESULTS = Path(__file__).resolve().parent / "results"
TOOLS = 6
PAGE_CAP = 100
WRITES = ("POST", "PATCH", "DELETE")
POLL_SECONDS = 10.0
PROFILE_RATE = 200
"""py-spy samples per second (``--profile``)."""
SOAK_RESYNC, SOAK_RELIST = 60.0, 600.0
"""The soak runs the production schedule (config.toml's relist) with a short resync."""
RELIST_SECONDS = 3600.0
"""The full relist (deletions) is its own cost, measured by the cold observe: kept out of the
pass figures, where at 100,000 assistants it would overlap the pass by chance."""


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

    def give_numbers(self) -> int:
        """A phone number bought in the dashboard for every inbound agent, named by its row
        (the platform's way): the controller must keep each routed to its assistant."""
        with self.engine.begin() as conn:
            agents = [
                r.id for r in conn.execute(text("select id from agents where role = 'inbound'"))
            ]
        named = []
        with httpx.Client(base_url=self.sim, timeout=60) as client:
            for n, agent_id in enumerate(agents):
                body = {"provider": "vapi", "number": f"+1555{n:07d}"}
                number = client.post("/_sim/phone-numbers", json=body).json()["id"]
                named.append({"n": number, "a": agent_id})
        with self.engine.begin() as conn:
            conn.execute(text("update agents set vapi_phone_number_id = :n where id = :a"), named)
        return len(named)

    def arrivals(self) -> list[float]:
        """When each API request reached the simulator (its monotonic clock), 429s included."""
        return list(self.sim_get("/_bench/arrivals"))

    def refused(self) -> list[float]:
        """When each request the simulator answered 429 reached it (the same clock)."""
        return list(self.sim_get("/_bench/refused"))

    def count(self, sql: str, **params: Any) -> int:
        """A ``select count(*)`` against the benchmark's database."""
        with self.engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar_one())

    def synced(self) -> int:
        return self.count("select count(*) from reconciler.org_status where state = 'synced'")

    def edit(self, count: int) -> list[str]:
        """Dashboard edits of ``count`` assistants picked at random; their ids."""
        answer = httpx.post(
            f"{self.sim}/_sim/edits",
            json={
                "resource": "assistant",
                "count": count,
                "changes": {"firstMessage": "Edited in the dashboard"},
            },
            timeout=60,
        )
        answer.raise_for_status()
        return list(answer.json())

    def agent_ids(self) -> list[UUID]:
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(text("select id from agents order by id"))]

    def edit_prompt(self, agent: UUID, prompt: str) -> float:
        """The platform saves an agent's prompt; when the commit returned (wall clock)."""
        with self.engine.begin() as conn:
            conn.execute(
                text("update agents set system_prompt = :p where id = :id"),
                {"p": prompt, "id": agent},
            )
        return time.time()

    def predate_controller(self) -> None:
        """No work rows, as on a platform that existed before the controller: the daemon's
        start-up makes them (bulk), the seeding's triggers did not count."""
        with self.engine.begin() as conn:
            conn.execute(text("delete from reconciler.work_items"))

    def connections(self) -> int:
        """Open connections to the benchmark's database (the daemon's pool and listener)."""
        return self.count(
            "select count(*) from pg_stat_activity "
            "where datname = current_database() and pid <> pg_backend_pid()"
        )

    def idle(self) -> bool:
        """Nothing due, nothing held: the daemon has caught up."""
        return not self.count(
            "select count(*) from reconciler.work_items "
            "where due_at <= now() or lease_owner is not null"
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
        return self.count(
            "select count(*) from reconciler.work_items "
            "where updated_at >= to_timestamp(:t) and lease_owner is null "
            "and org_id <> '00000000-0000-0000-0000-000000000000'",
            t=moment,
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
            "bench.simulator",  # controller.simulator, plus the arrival times
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
    relist: float = RELIST_SECONDS,
    name: str = "bench",
    cpu_profile: bool = False,
) -> Iterator[subprocess.Popen[str]]:
    """``cpu_profile``: the daemon runs under ``bench.cpu_sampler``, which writes
    ``bench/results/<name>.cpu.folded`` as it exits."""
    config = b.workdir / f"{name}.toml"
    write_config(
        config, rate=rate, burst=burst, concurrency=concurrency, resync=resync, relist=relist
    )
    RESULTS.mkdir(exist_ok=True)
    log = (RESULTS / f"{name}.log").open("w")
    if cpu_profile:
        cpu_folded(name).unlink(missing_ok=True)  # a daemon that dies writes none
    sampler = ["-m", "bench.cpu_sampler", str(cpu_folded(name)), "-m", "controller"]
    process = subprocess.Popen(
        [
            sys.executable,
            *(sampler if cpu_profile else ["-m", "controller"]),
            "--log-level",
            "INFO",
            "run",
            "--config",
            str(config),
            "--replica-id",
            name,
        ],
        env=controller_env(b),
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


def cpu_folded(name: str) -> Path:
    return RESULTS / f"{name}.cpu.folded"


def controller_env(b: Bench) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": b.url,
        "VAPI_BASE_URL": b.sim,
        "VAPI_PRIVATE_KEY": KEY,
        "BACKEND_URL": "https://backend.bench.example",
    }


@contextmanager
def daemons(
    b: Bench, count: int, *, rate: float, burst: int, concurrency: int, cpu_profile: bool = False
) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` replicas started together: one config file, log and replica id each
    (``bench`` alone, else ``replica-1`` ...), the same database and simulator. Each is given
    the account's whole rate: a daemon divides it by the replicas it sees alive (their
    heartbeats), as ``controller/daemon/jobs.py`` ``share_rate`` does."""
    names = ["bench"] if count == 1 else [f"replica-{n}" for n in range(1, count + 1)]
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                daemon(
                    b,
                    rate=rate,
                    burst=burst,
                    concurrency=concurrency,
                    name=name,
                    cpu_profile=cpu_profile,
                )
            )
            for name in names
        ]


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        sys.exit("--profile needs py-spy (pip install py-spy)")
    return found


@contextmanager
def profiling(enabled: bool, processes: list[subprocess.Popen[str]]) -> Iterator[list[Path]]:
    """py-spy attached to each daemon (by pid) once its interpreter is up; on leaving, each
    recorder gets SIGINT (it then writes ``bench/results/<daemon>.folded``), before the
    daemons are stopped. Yields the folded files' paths (written only on leaving)."""
    if not enabled:
        yield []
        return
    recorders: list[subprocess.Popen[bytes]] = []
    outputs = []
    try:
        for process in processes:
            name = _daemon_name(process)
            output = RESULTS / f"{name}.folded"
            output.unlink(missing_ok=True)
            recorders.append(_attach(process.pid, output, RESULTS / f"{name}.py-spy.log"))
            outputs.append(output)
        yield outputs
    finally:
        for recorder in recorders:
            if recorder.poll() is None:
                recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            recorder.wait(timeout=60)


def _daemon_name(process: subprocess.Popen[str]) -> str:
    args = [str(a) for a in process.args]  # type: ignore[union-attr]
    return args[args.index("--replica-id") + 1]


def _attach(pid: int, output: Path, log: Path) -> subprocess.Popen[bytes]:
    """py-spy on ``pid``, retried while the interpreter is not up yet (it exits at once)."""
    command = [py_spy(), "record", "--format", "raw", "--rate", str(PROFILE_RATE)]
    command += ["--nonblocking", "--pid", str(pid), "--output", str(output)]
    deadline = time.monotonic() + 30
    while True:
        with log.open("w") as sink:
            recorder = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        try:
            recorder.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return recorder  # sampling
        if time.monotonic() > deadline:
            sys.exit(f"py-spy could not attach to {pid}: see {log}")
        time.sleep(0.1)


def profile_figures(
    folded: list[Path], *, writes: int, cpu_s: float, unit: str = "write"
) -> tuple[dict[str, Any], str]:
    """The profile's categories (share, ms per ``unit``: ``cpu_s`` split by share, over
    ``writes`` of them), and the table to print.

    py-spy counts a thread as active when it is running *or waiting for a CPU* (state R):
    on a busy machine the samples exceed the CPU seconds and the shares lean towards the
    calls after which the daemon was preempted (a query sent wakes Postgres). Said in the
    table when the samples exceed the measured CPU by more than a fifth."""
    lines = [line for path in folded for line in path.read_text().splitlines()]
    rows = summarize(lines, writes=writes, cpu_seconds=cpu_s, rate=PROFILE_RATE)
    samples = sum(r.samples for r in rows)
    table = format_rows(rows, unit=unit)
    if samples / PROFILE_RATE > 1.2 * cpu_s:
        table += (
            f"\n(sampled {samples / PROFILE_RATE:.1f} s against {cpu_s:.1f} CPU s: the daemon "
            "waited for a CPU, shares include that wait)"
        )
    figures = {
        "profile_files": [str(p.relative_to(RESULTS.parent.parent)) for p in folded],
        "profile_sampled_cpu_s": round(samples / PROFILE_RATE, 2),
        "profile": {
            r.category: {"share": round(r.share, 4), f"ms_per_{unit}": round(r.ms_per_write, 3)}
            for r in rows
        },
    }
    return figures, table


def busiest_second(moments: list[float]) -> tuple[int, float]:
    """The most of ``moments`` (seconds) within any window of 1 s, and where that window
    starts (seconds after the first moment)."""
    ordered = sorted(moments)
    best, at, start = 0, 0.0, 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - 1.0:
            start += 1
        if end - start + 1 > best:
            best, at = end - start + 1, ordered[start] - ordered[0]
    return best, at


def headline(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "orgs": args.orgs,
        "assistants": 2 * args.orgs,
        "rate": args.rate,
        "latency_s": args.latency,
    }


def write_config(
    path: Path,
    *,
    rate: float,
    burst: int,
    concurrency: int,
    resync: float = 3600,
    relist: float = RELIST_SECONDS,
) -> None:
    """The daemon's config.toml; rewriting it is picked up by its hot reload."""
    path.write_text(
        f"[vapi]\nrate_limit_per_second = {rate}\nburst = {burst}\n"
        f"poll_interval_seconds = {POLL_SECONDS}\nrelist_interval_seconds = {relist}\n"
        "relist_budget_share = 0\n"  # relist on the measured schedule only
        f"[controller]\nconcurrency = {concurrency}\nresync_interval_seconds = {resync}\n"
        f'resync_jitter = 0.0\n[server]\nlisten = "127.0.0.1:0"\n'
    )


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """The process's CPU seconds in user mode and in the kernel (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's threads were ready to run but waited for a CPU (``schedstat``):
    on a shared machine, how much of the wall time was contention, not the daemon."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def peak_rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS:")


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            sys.exit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def cold_start(args: argparse.Namespace) -> dict[str, Any]:
    """``--orgs`` organizations converged from an empty Vapi by ``--replicas`` daemons
    started together, sharing the account's ``--rate`` (and with ``--profile``, where their
    CPU went); with ``--one-shot``, by one ``vapi-reconciler reconcile``. The daemons' wall
    is given from their launch and from their first Vapi request, start-up left out (issue
    17's daemon target; the one-shot's includes start-up)."""
    if args.one_shot:
        return one_shot_cold_start(args)
    minimum = TOOLS + 2 * args.orgs
    replicas = args.replicas
    with bench(args.orgs, rate=args.rate, latency=args.latency, burst=args.burst) as b:
        start, started = time.monotonic(), time.time()
        with (
            daemons(
                b,
                replicas,
                rate=args.rate,
                burst=args.burst,
                concurrency=args.concurrency,
                cpu_profile=args.cpu_profile,
            ) as ds,
            profiling(args.profile, ds) as folded,
        ):
            wait_for(
                lambda: writes_in(b.requests()) >= minimum and b.synced() == args.orgs,
                args.timeout,
                "convergence",
            )
            wall = time.monotonic() - start
            rss = [peak_rss_mb(d.pid) for d in ds]
            split = [cpu_split(d.pid) for d in ds]
            daemon_cpu = [user + system for user, system in split]
            waited = sum(runqueue_wait_s(d.pid) for d in ds)
        counts = b.requests()
        sim_cpu = cpu_seconds(b.sim_pid)
        stamps = [w["at"] for w in b.sim_get("/_sim/writes")]
        arrivals, refused = b.arrivals(), b.refused()
        stored = b.sim_get("/_sim/stats")
    calls = sum(counts.values())
    throttled = sum(n for k, n in counts.items() if k.endswith(" 429"))
    floor = minimum / args.rate
    writes = writes_in(counts)
    peak, peak_at = busiest_second(arrivals)
    peak_writes, _ = busiest_second(stamps)
    result = {
        **headline("cold-start" if replicas == 1 else f"cold-start-{replicas}-replicas", args),
        "replicas": replicas,
        "wall_s": round(wall, 2),
        "floor_s": round(floor, 2),
        "wall_over_floor": round(wall / floor, 3),
        "start_to_first_request_s": round(min(arrivals) - start, 2),
        "first_request_to_converged_over_floor": round((wall + start - min(arrivals)) / floor, 3),
        "start_to_first_write_s": round(min(stamps) - started, 2),
        "first_to_last_write_s": round(max(stamps) - min(stamps), 2),
        "write_span_over_floor": round((max(stamps) - min(stamps)) / floor, 3),
        "writes": writes,
        "minimum_writes": minimum,
        "writes_over_minimum": round(writes / minimum, 3),
        "objects_in_vapi_over_minimum": stored["assistants"] + stored["tools"] - minimum,
        "calls": calls,
        "calls_by_method_status": dict(sorted(counts.items())),
        "share_429": round(throttled / calls, 4),
        "429s_by_second": dict(Counter(int(t - min(arrivals)) for t in refused)),
        "peak_requests_1s": peak,
        "peak_requests_at_s": round(peak_at, 1),
        "peak_writes_1s": peak_writes,
        "budget_1s": round(args.rate + args.burst),
        "daemon_cpu_s": round(sum(daemon_cpu), 2),
        "daemon_cpu_s_each": [round(c, 2) for c in daemon_cpu],
        "cpu_ms_per_write": round(1000 * sum(daemon_cpu) / max(writes, 1), 2),
        "daemon_kernel_share": round(sum(k for _, k in split) / max(sum(daemon_cpu), 1e-9), 3),
        "daemon_runqueue_wait_s": round(waited, 2),
        "simulator_cpu_s": round(sim_cpu, 2),
        "peak_rss_mb": round(max(rss), 1),
    }
    if folded:
        figures, table = profile_figures(folded, writes=writes, cpu_s=sum(daemon_cpu))
        result.update(figures)
        print(table)
    if args.cpu_profile:
        sampled = [cpu_folded(_daemon_name(d)) for d in ds]
        figures, table = profile_figures(sampled, writes=writes, cpu_s=sum(daemon_cpu))
        result.update({f"cpu_{key}": value for key, value in figures.items()})
        print(table)
    return result


def one_shot_cold_start(args: argparse.Namespace) -> dict[str, Any]:
    """``vapi-reconciler reconcile`` over the seeded account: wall time from its launch
    (start-up included) to its exit, its CPU from the kernel's account of waited children."""
    minimum = TOOLS + 2 * args.orgs
    with bench(args.orgs, rate=args.rate, latency=args.latency, burst=args.burst) as b:
        config = b.workdir / "reconcile.toml"
        write_config(config, rate=args.rate, burst=args.burst, concurrency=args.concurrency)
        RESULTS.mkdir(exist_ok=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start, started = time.monotonic(), time.time()
        with (RESULTS / "reconcile.log").open("w") as log:
            done = subprocess.run(
                [sys.executable, "-m", "controller", "reconcile", "--config", str(config)],
                env=controller_env(b),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=args.timeout,
                check=False,
            )
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        counts = b.requests()
        stamps = [w["at"] for w in b.sim_get("/_sim/writes")]
        synced = b.synced()
    if done.returncode != 0:
        sys.exit(f"reconcile exited {done.returncode}: see {RESULTS / 'reconcile.log'}")
    writes = writes_in(counts)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    floor = minimum / args.rate
    calls = sum(counts.values())
    return {
        **headline("cold-start-reconcile", args),
        "wall_s": round(wall, 2),
        "floor_s": round(floor, 2),
        "wall_over_floor": round(wall / floor, 3),
        "start_to_first_write_s": round(min(stamps) - started, 2),
        "writes": writes,
        "minimum_writes": minimum,
        "synced": synced,
        "calls": calls,
        "calls_by_method_status": dict(sorted(counts.items())),
        "share_429": round(sum(n for k, n in counts.items() if k.endswith(" 429")) / calls, 4),
        "reconcile_cpu_s": round(cpu, 2),
        "cpu_ms_per_write": round(1000 * cpu / max(writes, 1), 2),
    }


@contextmanager
def converged(
    b: Bench,
    args: argparse.Namespace,
    *,
    resync: float = 3600,
    relist: float = RELIST_SECONDS,
    cpu_profile: bool = False,
) -> Iterator[tuple[subprocess.Popen[str], float]]:
    """A daemon that converged the seeded account without limits, then runs at the
    scenario's rate and latency (simulator and, through hot reload, the daemon).
    ``cpu_profile``: the daemon runs under ``bench.cpu_sampler``."""
    minimum = TOOLS + 2 * args.orgs
    with daemon(
        b,
        rate=5000,
        burst=200,
        concurrency=16,
        resync=resync,
        relist=relist,
        cpu_profile=cpu_profile,
    ) as d:
        setup = wait_for(
            lambda: b.synced() == args.orgs and writes_in(b.requests()) >= minimum,
            args.timeout,
            "setup convergence",
        )
        b.faults(latency_seconds=args.latency, rate_limit_per_second=args.rate)
        write_config(
            b.workdir / "bench.toml",
            rate=args.rate,
            burst=args.burst,
            concurrency=args.concurrency,
            resync=resync,
            relist=relist,
        )
        time.sleep(2.0)  # reloaded within a second (a changed [controller] revisits all)
        wait_for(b.idle, args.timeout, "the queue to settle after the reload")
        yield d, setup


def steady_state(args: argparse.Namespace) -> dict[str, Any]:
    """One full resync pass over a converged account, every organization due at once
    (``--numbers``: every inbound agent with a phone number to keep routed); ``--passes``:
    more such passes after it. The first follows the cold start, where every organization's
    last visit wrote: each goes through every step of the chain. The passes after it find
    each organization as the first left it, and are answered from its verdict
    (``controller.reconcile.quiet``): ``--profile`` records those when there are any.
    ``--cpu-profile``: the first pass only, sampled by CPU time (``bench.cpu_sampler``'s
    window)."""
    if args.profile and args.cpu_profile:
        sys.exit("steady-state: --profile (py-spy) or --cpu-profile, not both")
    with bench(args.orgs, rate=None, latency=0.0, burst=args.burst) as b:
        numbers = b.give_numbers() if args.numbers else 0
        with converged(b, args, cpu_profile=args.cpu_profile) as (d, setup):
            profiled = args.passes == 1  # else the passes after the first
            with profiling(args.profile and profiled, [d]) as folded:
                before, cpu, start = b.requests(), cpu_seconds(d.pid), time.time()
                if args.cpu_profile:
                    d.send_signal(signal.SIGUSR1)
                b.fall_due()
                took = wait_for(
                    lambda: b.visited_since(start) >= args.orgs, 600, "a full resync pass"
                )
                after, cpu_after = b.requests(), cpu_seconds(d.pid)
                if args.cpu_profile:
                    folded = [_window_written(d, cpu_folded("bench"))]
            with profiling(args.profile and not profiled, [d]) as more_folded:
                more = [_one_pass(b, d, args.orgs) for _ in range(args.passes - 1)]
            rss, rss_now = peak_rss_mb(d.pid), rss_mb(d.pid)
        pass_calls = after - before
        profile: dict[str, Any] = {}
        if folded or more_folded:  # ``writes``: the divisor of the table's last column
            profiled_passes = 1 if folded else args.passes - 1
            cpu_s = (cpu_after - cpu) if folded else sum(more) * 2 * args.orgs / 1000
            profile, table = profile_figures(
                folded or more_folded,
                writes=2 * args.orgs * profiled_passes,
                cpu_s=cpu_s,
                unit="assistant",
            )
            print(table)
        observe = {} if args.skip_cold_observe else cold_observe(b, args)
    return {
        **headline("steady-state", args),
        "phone_numbers": numbers,
        "setup_s": round(setup, 1),
        "pass_s": round(took, 1),
        "vapi_calls_per_pass": sum(pass_calls.values()),
        "of_which_poll_listings": listings_in(pass_calls),
        "calls_by_method_status": dict(sorted(pass_calls.items())),
        "writes_per_pass": writes_in(pass_calls),
        "cpu_s_per_pass": round(cpu_after - cpu, 2),
        "cpu_ms_per_assistant": round(1000 * (cpu_after - cpu) / (2 * args.orgs), 3),
        "peak_rss_mb": round(rss, 1),
        "rss_mb_after_pass": round(rss_now, 1),
        **({"more_passes_cpu_ms_per_assistant": more} if more else {}),
        **profile,
        **observe,
    }


def _window_written(d: subprocess.Popen[str], output: Path) -> Path:
    """``bench.cpu_sampler``'s window ended (SIGUSR2) and written to ``output``."""
    output.unlink(missing_ok=True)
    d.send_signal(signal.SIGUSR2)
    wait_for(output.exists, 30, "the CPU profile's window")
    return output


def _one_pass(b: Bench, d: subprocess.Popen[str], orgs: int) -> float:
    """Another pass once the queue is idle (``--passes``): its CPU ms per assistant."""
    wait_for(b.idle, 600, "the queue to settle between passes")
    cpu, start = cpu_seconds(d.pid), time.time()
    b.fall_due()
    wait_for(lambda: b.visited_since(start) >= orgs, 600, "a full resync pass")
    return round(1000 * (cpu_seconds(d.pid) - cpu) / (2 * orgs), 3)


def drift_storm(args: argparse.Namespace) -> dict[str, Any]:
    """1% of the assistants edited in Vapi's dashboard at once, behind the daemon's back."""
    with bench(args.orgs, rate=None, latency=0.0, burst=args.burst) as b, converged(b, args):
        before = b.requests()
        edited = b.edit(max(1, 2 * args.orgs // 100))
        edited_at = time.time()
        wait_for(lambda: writes_in(b.requests() - before) >= len(edited), 600, "the repairs")
        took = time.time() - edited_at
        time.sleep(POLL_SECONDS + 2)  # a poll after the repairs: nothing more to do
        calls = b.requests() - before
        repaired = {w["vapi_id"] for w in b.sim_get("/_sim/writes") if w["at"] >= edited_at}
        synced = b.synced()
    return {
        **headline("drift-storm", args),
        "edited": len(edited),
        "writes": writes_in(calls),
        "writes_are_the_edited": repaired == set(edited),
        "edit_to_converged_s": round(took, 2),
        "target_s": round(POLL_SECONDS + 1.1 * len(edited) / args.rate, 2),
        "calls_by_method_status": dict(sorted(calls.items())),
        "synced_after": synced,
    }


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Steady resync for ``--minutes``: the daemon's memory and connections over time."""
    samples: list[dict[str, float]] = []
    with (
        bench(args.orgs, rate=None, latency=0.0, burst=args.burst) as b,
        converged(b, args, resync=SOAK_RESYNC, relist=SOAK_RELIST) as (d, _),
    ):
        start, cpu, before = time.monotonic(), cpu_seconds(d.pid), b.requests()
        while (elapsed := time.monotonic() - start) < 60 * args.minutes:
            samples.append(
                {
                    "t_s": round(elapsed),
                    "rss_mb": round(rss_mb(d.pid), 1),
                    "open_fds": open_fds(d.pid),
                    "pg_connections": b.connections(),
                }
            )
            time.sleep(min(30.0, max(60 * args.minutes - elapsed, 0.0)))
        calls, cpu = b.requests() - before, cpu_seconds(d.pid) - cpu
    warm = samples[min(2, len(samples) - 1)]  # after the first minute
    last = samples[-1]
    return {
        "scenario": "soak",
        "orgs": args.orgs,
        "minutes": args.minutes,
        "resync_interval_s": SOAK_RESYNC,
        "relist_interval_s": SOAK_RELIST,
        "rss_mb_warm": warm["rss_mb"],
        "rss_mb_last": last["rss_mb"],
        "rss_mb_max": max(s["rss_mb"] for s in samples),
        "rss_growth": round(last["rss_mb"] / warm["rss_mb"] - 1, 4),
        "open_fds_warm_last_max": [
            warm["open_fds"],
            last["open_fds"],
            max(s["open_fds"] for s in samples),
        ],
        "pg_connections_warm_last_max": [
            warm["pg_connections"],
            last["pg_connections"],
            max(s["pg_connections"] for s in samples),
        ],
        "daemon_cpu_s": round(cpu, 1),
        "writes": writes_in(calls),
        "samples": samples,
    }


def cold_observe(b: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh daemon over the converged account: the calls that build its cache."""
    before = b.requests()
    log = RESULTS / "fresh.log"
    with daemon(b, rate=args.rate, burst=args.burst, concurrency=args.concurrency, name="fresh"):
        wait_for(lambda: "started as" in log.read_text(), args.timeout, "the cache")
        listing = b.requests() - before
    return {
        "cold_observe_calls": sum(listing.values()),
        "cold_observe_target": math.ceil(2 * args.orgs / PAGE_CAP) + 3,
    }


def change_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Agent row committed -> the PATCH received by Vapi, one change at a time, daemon idle;
    with ``--under-load``, during a cold start instead (``change_latency_under_load``)."""
    if args.under_load:
        return change_latency_under_load(args)
    with bench(args.orgs, rate=args.rate, latency=args.latency, burst=args.burst) as b:
        agents = b.agent_ids()
        with (
            daemon(b, rate=args.rate, burst=args.burst, concurrency=args.concurrency) as d,
            profiling(args.profile, [d]) as folded,
        ):
            wait_for(lambda: b.synced() == args.orgs, args.timeout, "convergence")
            time.sleep(1.0)
            samples = []
            for n in range(args.samples):
                before = len(b.sim_get("/_sim/writes"))
                committed = b.edit_prompt(agents[n % len(agents)], f"Prompt revision {n}")
                wait_for(partial(_more_writes, b, before), 30, "the PATCH")
                samples.append(b.sim_get("/_sim/writes")[before]["at"] - committed)
            cpu, waited = cpu_seconds(d.pid), runqueue_wait_s(d.pid)
        writes = writes_in(b.requests())
    result = {**headline("change-latency", args), **latency_figures(samples)}
    return result | daemon_figures(folded, writes=writes, cpu_s=cpu, waited_s=waited)


def daemon_figures(
    folded: list[Path], *, writes: int, cpu_s: float, waited_s: float
) -> dict[str, Any]:
    """The daemon's CPU over the run's writes, and its profile when one was recorded."""
    result = {
        "writes": writes,
        "daemon_cpu_s": round(cpu_s, 2),
        "cpu_ms_per_write": round(1000 * cpu_s / max(writes, 1), 2),
        "daemon_runqueue_wait_s": round(waited_s, 2),
    }
    if folded:
        figures, table = profile_figures(folded, writes=writes, cpu_s=cpu_s)
        print(table)
        result |= figures
    return result


EDIT_MARK = re.compile(r"\[edit (\d+)\]")


def change_latency_under_load(args: argparse.Namespace) -> dict[str, Any]:
    """``--samples`` agent rows (distinct, picked at random) edited at even intervals over a
    cold start of ``--orgs`` organizations at the rate limit: edit committed -> the first
    Vapi write carrying it (the assistant's create, or a PATCH if it already existed).

    The platform predates the controller, as at a first install: the work rows are made by
    the daemon's start-up (bulk), not by the seeding's triggers."""
    floor = (TOOLS + 2 * args.orgs) / args.rate
    with bench(args.orgs, rate=args.rate, latency=args.latency, burst=args.burst) as b:
        b.predate_controller()
        picked = random.Random(17).sample(b.agent_ids(), min(args.samples, 2 * args.orgs))
        spacing = 0.8 * floor / len(picked)  # edits end before the cold start would
        edited: dict[int, float] = {}
        with (
            daemon(b, rate=args.rate, burst=args.burst, concurrency=args.concurrency) as d,
            profiling(args.profile, [d]) as folded,
        ):
            wait_for(lambda: writes_in(b.requests()) > TOOLS, args.timeout, "the first create")
            start = time.monotonic()
            for n, agent in enumerate(picked):
                time.sleep(max(0.0, start + n * spacing - time.monotonic()))
                edited[n] = b.edit_prompt(agent, f"Edited during the cold start [edit {n}]")
            cold = wait_for(lambda: b.synced() == args.orgs and b.idle(), args.timeout, "idle")
            cpu, waited = cpu_seconds(d.pid), runqueue_wait_s(d.pid)
        writes = writes_in(b.requests())
        first_seen: dict[int, float] = {}
        for write in b.sim_get("/_sim/writes"):
            for mark in EDIT_MARK.findall(json.dumps(write["body"])):
                first_seen.setdefault(int(mark), write["at"])
    missing = sorted(set(edited) - set(first_seen))
    if missing:
        sys.exit(f"edits never written to Vapi: {missing}")
    return {
        **headline("change-latency-under-load", args),
        "edits_over_s": round(spacing * len(picked), 1),
        "floor_s": round(floor, 2),
        "converged_after_last_edit_s": round(cold, 1),
        **latency_figures([first_seen[n] - at for n, at in edited.items()]),
        **daemon_figures(folded, writes=writes, cpu_s=cpu, waited_s=waited),
    }


def latency_figures(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "samples": len(ordered),
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "min_ms": round(1000 * ordered[0], 1),
        "max_ms": round(1000 * ordered[-1], 1),
    }


def _more_writes(b: Bench, than: int) -> bool:
    return len(b.sim_get("/_sim/writes")) > than


def chaos(args: argparse.Namespace) -> dict[str, Any]:
    """The fault campaign, ``bench/chaos.py`` (its options: ``chaos --help``)."""
    from bench.chaos import chaos as campaign  # it imports this module

    return campaign(args)


def startup(args: argparse.Namespace) -> dict[str, Any]:
    """``reconcile``'s process start to its first write (``bench/startup.py``, which
    imports this module: imported here only when asked for)."""
    from bench.startup import startup as measure

    return measure(args)


SCENARIOS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "cold-start": cold_start,
    "startup": startup,
    "steady-state": steady_state,
    "change-latency": change_latency,
    "drift-storm": drift_storm,
    "soak": soak,
    "chaos": chaos,
}


def main() -> None:
    if sys.argv[1:2] == ["chaos"]:  # its own options, summary and exit code
        from bench.chaos import main as campaign

        sys.exit(campaign(sys.argv[2:]))
    args = argument_parser().parse_args()
    result = SCENARIOS[args.scenario](args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{result['scenario']}.json").write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


def argument_parser() -> argparse.ArgumentParser:
    """Every scenario's options (the smoke tests start from its defaults too)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--orgs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="simulator and client req/s")
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05, help="simulator seconds/request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="cold-start: daemons started together, sharing --rate (each daemon divides it)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cold-start, change-latency, steady-state: py-spy on each daemon, "
        "bench/results/<daemon>.folded",
    )
    parser.add_argument(
        "--cpu-profile",
        action="store_true",
        help="cold-start, steady-state (its first pass): each daemon sampled by its CPU time "
        "from inside (bench/cpu_sampler.py), bench/results/<daemon>.cpu.folded",
    )
    parser.add_argument(
        "--under-load",
        action="store_true",
        help="change-latency: the edits spread over a cold start of --orgs organizations",
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="soak duration")
    parser.add_argument(
        "--skip-cold-observe", action="store_true", help="steady-state: the pass figures only"
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=1,
        help="steady-state: passes measured (the first is the headline; the others listed, "
        "and profiled with --profile)",
    )
    parser.add_argument(
        "--numbers", action="store_true", help="steady-state: a phone number per inbound agent"
    )
    parser.add_argument(
        "--one-shot",
        action="store_true",
        help="cold-start: converge with one `vapi-reconciler reconcile` instead of daemons",
    )
    parser.add_argument("--runs", type=int, default=9, help="startup: runs to take the median of")
    parser.add_argument("--timeout", type=float, default=1800.0)
    return parser


if __name__ == "__main__":
    main()
