"""Where the daemon's CPU goes: collapsed stacks (``py-spy record --format raw``) summed by
category, so a profile reads as a short table instead of a flame graph.

    python -m bench.profile bench/results/bench.folded --writes 4006 [--cpu-s 69.0]

Each sample goes to the innermost frame (leaf first) that matches a category: JSON under
SQLAlchemy counts as JSON, SQLAlchemy under the claim loop counts as the database. The event
loop is credited only with what asyncio does itself (no frame of a library or of the
controller inside it), and the controller's own code outside ``controller.core`` has a row
of its own, so the event loop never absorbs the daemon's work. "other" is what no frame
matched (stacks with no Python frame at all included).

Must not run or attach anything: a pure function over the folded lines, plus ``main``.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 200
"""Samples per second asked of py-spy (``--rate``): turns samples into seconds when the
daemon's own CPU seconds are not given."""

OTHER = "other"
CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # checked in this order within one frame: the specific before the generic
    ("garbage collection", re.compile(r"^gc::collect$")),  # bench.cpu_sampler's frame
    ("hashing", re.compile(r"^hashlib[/.]|^controller/.*::[\w.]*(fingerprint|hash|digest)", re.I)),
    ("JSON", re.compile(r"^(json|orjson|ujson|simplejson)[/.]")),
    ("logging", re.compile(r"^(loguru|logging)/|^controller/logs\.py")),
    ("metrics", re.compile(r"^prometheus_client/|^controller/daemon/metrics\.py")),
    (
        "database",
        re.compile(r"^(psycopg\w*|sqlalchemy|asyncpg|greenlet)[/.]|^desired_state/"),
    ),
    (
        "HTTP",
        re.compile(r"^(httpx|httpcore|h11|h2|anyio|sniffio|aiohttp|uvicorn|starlette)/"),
    ),
    ("planning/rendering", re.compile(r"^controller/core/")),
    ("controller, rest", re.compile(r"^controller/")),
    ("event loop", re.compile(r"^(asyncio/|selectors\.py|uvloop/)")),
)
ORDER = [name for name, _ in CATEGORIES] + [OTHER]
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


@dataclass(frozen=True)
class Row:
    category: str
    samples: int
    share: float
    ms_per_write: float


def frame_key(frame: str) -> str:
    """``file::function`` of one folded frame, ``function (file:line)``; the line dropped."""
    match = FRAME.match(frame.strip())
    if match is None:
        return f"?::{frame.strip()}"
    return f"{match['file']}::{match['function']}"


def categorize(stack: list[str]) -> str:
    """The category of the innermost frame that has one (``stack`` is root first)."""
    for frame in reversed(stack):
        key = frame_key(frame)
        for name, pattern in CATEGORIES:
            if pattern.search(key):
                return name
    return OTHER


def parse(lines: Iterable[str]) -> Iterable[tuple[list[str], int]]:
    """``(frames root first, samples)`` of each folded line ``a;b;c 12``."""
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if f.strip()]
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        yield frames, int(count)


def by_category(lines: Iterable[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for frames, samples in parse(lines):
        counts[categorize(frames)] += samples
    return counts


def summarize(
    lines: Iterable[str],
    *,
    writes: int,
    cpu_seconds: float | None = None,
    rate: int = SAMPLE_RATE,
) -> list[Row]:
    """A row per category (every category, in a fixed order): its share of the samples and
    its milliseconds per write. The milliseconds split ``cpu_seconds`` (the daemons' own
    CPU, measured apart) by share when given, else count each sample as ``1 / rate`` s."""
    counts = by_category(lines)
    total = sum(counts.values())
    seconds = cpu_seconds if cpu_seconds is not None else total / rate
    rows = []
    for name in ORDER:
        share = counts[name] / total if total else 0.0
        rows.append(Row(name, counts[name], share, 1000 * share * seconds / max(writes, 1)))
    return rows


def hottest(lines: Iterable[str], *, top: int = 12) -> list[tuple[str, int]]:
    """The innermost frames (``file::function``) that hold the most samples (self time)."""
    counts: Counter[str] = Counter()
    for frames, samples in parse(lines):
        counts[frame_key(frames[-1]) if frames else "(no Python frame)"] += samples
    return counts.most_common(top)


def format_rows(rows: list[Row], *, unit: str = "write") -> str:
    total = sum(r.samples for r in rows)
    lines = [f"{'category':<20} {'samples':>8} {'CPU share':>10} {'ms/' + unit:>9}"]
    lines += [
        f"{r.category:<20} {r.samples:>8} {100 * r.share:>9.1f}% {r.ms_per_write:>9.3f}"
        for r in rows
    ]
    lines.append(
        f"{'total':<20} {total:>8} {100.0:>9.1f}% {sum(r.ms_per_write for r in rows):>9.3f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folded", type=Path, nargs="+", help="py-spy raw output files")
    parser.add_argument("--writes", type=int, required=True, help="Vapi writes in the run")
    parser.add_argument(
        "--cpu-s", type=float, default=None, help="the daemons' CPU seconds (else from samples)"
    )
    parser.add_argument("--rate", type=int, default=SAMPLE_RATE, help="py-spy samples/s")
    parser.add_argument("--top", type=int, default=12, help="hottest innermost frames shown")
    args = parser.parse_args(argv)
    lines = [line for path in args.folded for line in path.read_text().splitlines()]
    print(format_rows(summarize(lines, writes=args.writes, cpu_seconds=args.cpu_s, rate=args.rate)))
    if args.top:
        print("\nhottest innermost frames (self samples):")
        for key, samples in hottest(lines, top=args.top):
            print(f"{samples:>8}  {key}")


if __name__ == "__main__":
    main()
