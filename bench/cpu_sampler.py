"""Where a process's CPU goes, sampled by CPU time from inside it.

    python -m bench.cpu_sampler OUTPUT -m MODULE [ARGS ...]

runs ``python -m MODULE ARGS`` with a ``SIGPROF`` timer on the process's CPU time: after every
``INTERVAL`` of CPU (all threads together) the main thread's Python stack is credited with the
CPU spent since the last sample. Python runs a signal's handler only between bytecodes, so the
timers that fire during one long call into C (a ``json.loads`` of a large page, zlib,
psycopg's parsing) come as one call: weighting by the CPU time itself keeps those calls'
share. At exit (a normal one: the daemon's SIGTERM shutdown is) the CPU of each stack goes to
OUTPUT in ``INTERVAL`` units as collapsed stacks, py-spy's raw format, for ``bench.profile``.
A window instead of the whole run: SIGUSR1 forgets what was sampled so far, SIGUSR2 writes
OUTPUT and stops sampling (the daemon leaves both signals alone).

Why beside py-spy (``bench.run --profile``): py-spy samples wall time and counts a thread that
is ready but waiting for a core as busy. On the 2-core benchmark machine the daemon, the
simulator and Postgres take turns, so a py-spy profile of a cold start held a third more
samples than CPU seconds, most of the excess in the frames that had just woken Postgres. Here
only CPU spent is sampled. CPU spent in another thread is credited to whatever the main thread
was running (the daemon's work all runs on its main thread's event loop).
"""

from __future__ import annotations

import atexit
import gc
import runpy
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import FrameType

INTERVAL = 0.005
"""Seconds of CPU between samples: 200 a CPU second, ``bench.profile.SAMPLE_RATE``."""


class CpuSampler:
    def __init__(self, output: Path) -> None:
        self.output = output
        self.stacks: defaultdict[str, float] = defaultdict(float)
        """CPU seconds by stack."""
        self._last = time.process_time()
        self._collection: str | None = None
        """The stack a running garbage collection is credited to."""
        self._written = False
        """Sampling is over (SIGUSR2 or exit): nothing more is credited, or written."""
        roots = sorted({str(Path(p).resolve()) for p in sys.path if p}, key=len, reverse=True)
        self._roots = tuple(root.rstrip("/") + "/" for root in roots)

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.signal(signal.SIGUSR1, self._restart)
        signal.signal(signal.SIGUSR2, lambda _signum, _frame: self.write())
        signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)
        gc.callbacks.append(self._collecting)
        atexit.register(self.write)

    def _restart(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGUSR1: forget what was sampled so far (a window's start: ``steady-state``)."""
        if not self._written:
            self.stacks.clear()
            self._last = time.process_time()

    def write(self) -> None:
        """At exit, or on SIGUSR2 (a window's end: nothing is sampled after it, and the exit
        writes nothing more). Called from a signal handler: it must never raise into
        whatever the process was running."""
        if self._written:
            return
        self._written = True
        signal.setitimer(signal.ITIMER_PROF, 0)
        gc.callbacks.remove(self._collecting)
        try:
            partial = self.output.with_name(self.output.name + ".partial")
            with partial.open("w") as out:
                out.writelines(f"{stack} {n}\n" for stack, n in self.samples().items())
            partial.replace(self.output)  # whole or not at all, for whoever waits for it
        except OSError as exc:
            print(f"cpu_sampler: {self.output} not written: {exc}", file=sys.stderr)

    def samples(self) -> dict[str, int]:
        """Each stack's CPU in ``INTERVAL`` units, rounded so that they add up to the whole
        CPU's (largest remainders first), stacks with none left out. Rounded one by one, the
        many slivers around garbage collections each counted as a whole sample."""
        exact = {stack: max(cpu, 0.0) / INTERVAL for stack, cpu in self.stacks.items()}
        counts = {stack: int(units) for stack, units in exact.items()}
        short = round(sum(exact.values())) - sum(counts.values())
        for stack in sorted(exact, key=lambda s: exact[s] - counts[s], reverse=True)[:short]:
            counts[stack] += 1
        return {stack: n for stack, n in counts.items() if n}

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        if self._written:
            return
        now = time.process_time()
        spent, self._last = now - self._last, now
        self.stacks[self._collection or self._stack(frame)] += spent

    def _collecting(self, phase: str, info: dict[str, int]) -> None:
        """The cyclic garbage collector's CPU, as a frame of its own (``collect (gc:N)``, N
        its generation) under the code whose allocation started it. Timer signals that
        fire during a collection are handled after it, at whatever line runs next (this
        callback's, at its end): without this, collections were credited to lines that
        merely follow an allocation."""
        if self._written:
            return
        now = time.process_time()
        if phase == "start":
            stack = self._stack(sys._getframe(1))
            self.stacks[stack] += now - self._last
            self._collection = f"{stack};collect (gc:{info['generation']})"
        elif self._collection is not None:
            self.stacks[self._collection] += now - self._last
            self._collection = None
        self._last = now

    def _stack(self, frame: FrameType | None) -> str:
        frames = []
        while frame is not None:
            code = frame.f_code
            frames.append(f"{code.co_name} ({self._short(code.co_filename)}:{frame.f_lineno})")
            frame = frame.f_back
        return ";".join(reversed(frames))

    def _short(self, filename: str) -> str:
        """A module's file as py-spy names it: relative to the ``sys.path`` entry it is in."""
        for root in self._roots:
            if filename.startswith(root):
                return filename[len(root) :]
        return filename


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "-m":
        sys.exit("usage: python -m bench.cpu_sampler OUTPUT -m MODULE [ARGS ...]")
    output, module, args = Path(argv[0]), argv[2], argv[3:]
    CpuSampler(output.resolve()).start()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
