"""Start-up benchmark: ``vapi-reconciler reconcile`` from process start to its first write
(issue 17: within 0.8 s), against the simulator on a loopback port and a small seeded account.

Each run is a first install: a fresh database seeded with ``--orgs`` organizations, a fresh
simulator, then ``python -m controller reconcile``; the time runs from just before the
process is started to the simulator's stamp of its first write (a tool's create). Also
timed: ``import controller.cli`` alone, and a bare interpreter's start (the floor).

The controller's sources are compiled to bytecode first, as installing the package does:
with ``PYTHONDONTWRITEBYTECODE`` set (the Dockerfile's, and some shells') a source checkout
has none, and every run would compile the whole controller again (about 50 ms of each run on
the benchmark machine) where no deployment does.

    .venv/bin/python -m bench.startup --orgs 5 --runs 9

Postgres: a throwaway database on the server of ``DATABASE_URL``, or an embedded one.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import controller
import desired_state
from bench.run import KEY, RESULTS, Bench, bench, headline, write_config

RUNS = 9
TARGET_S = 0.8
CONCURRENCY = 16
SETTLE_S = 1.0
"""A pause before each run, for the set-up's own work (seeding, the simulator's start) to end."""
IMPORT_PROBE = (
    "import time\nstart = time.perf_counter()\nimport controller.cli\n"
    "print(time.perf_counter() - start)"
)


def startup(args: argparse.Namespace) -> dict[str, Any]:
    """``args``: ``orgs``, ``rate``, ``latency``, ``burst`` as every scenario of
    ``bench/run.py`` takes them; ``runs`` where given (else ``RUNS``)."""
    runs = getattr(args, "runs", RUNS)
    for package in (controller, desired_state):
        compileall.compile_dir(package.__path__[0], quiet=1)
    first_writes, exits = [], []
    for _ in range(runs):
        with bench(args.orgs, rate=args.rate, latency=args.latency, burst=args.burst) as b:
            config = b.workdir / "startup.toml"
            write_config(config, rate=args.rate, burst=args.burst, concurrency=CONCURRENCY)
            time.sleep(SETTLE_S)
            first_write, exited = reconcile_once(b, config)
        first_writes.append(first_write)
        exits.append(exited)
    imports = [import_seconds() for _ in range(runs)]
    bare = [interpreter_seconds() for _ in range(runs)]
    return {
        **headline("startup", args),
        "runs": runs,
        "start_to_first_write_s": spread(first_writes),
        "start_to_exit_s": spread(exits),
        "import_controller_cli_s": spread(imports),
        "bare_interpreter_s": spread(bare),
        "target_s": TARGET_S,
        "median_within_target": statistics.median(first_writes) <= TARGET_S,
    }


def reconcile_once(b: Bench, config: Path) -> tuple[float, float]:
    """One ``reconcile`` process: (start -> the simulator's first write, start -> exit)."""
    env = {
        **os.environ,
        "DATABASE_URL": b.url,
        "VAPI_BASE_URL": b.sim,
        "VAPI_PRIVATE_KEY": KEY,
        "BACKEND_URL": "https://backend.bench.example",
    }
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "startup.log").open("w") as log:
        started = time.time()
        process = subprocess.run(
            [sys.executable, "-m", "controller", "reconcile", "--config", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
        exited = time.time() - started
    if process.returncode != 0:
        sys.exit(f"reconcile exited {process.returncode}: see {RESULTS / 'startup.log'}")
    stamps = [w["at"] for w in b.sim_get("/_sim/writes")]
    if not stamps:
        sys.exit("reconcile wrote nothing")
    return min(stamps) - started, exited


def import_seconds() -> float:
    """``import controller.cli`` in a fresh interpreter, timed inside it."""
    found = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True
    )
    return float(found.stdout.split()[-1])


def interpreter_seconds() -> float:
    """A bare interpreter started and stopped: the floor under every command."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def spread(samples: list[float]) -> dict[str, float]:
    return {
        "min": round(min(samples), 3),
        "median": round(statistics.median(samples), 3),
        "max": round(max(samples), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=100.0, help="simulator and client req/s")
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05, help="simulator seconds/request")
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    result = startup(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
