"""The process's entry point: the ``vapi-reconciler`` console script and ``python -m
controller``. The command line, with the cyclic garbage collector held off during start-up.

Why: start-up makes a few hundred thousand objects that live as long as the process (modules,
classes, functions, SQLAlchemy's and pydantic's tables); every pass of the collector while
they are made walks those made so far, to find next to no garbage. On ``reconcile`` those
passes were about 250, some 75 ms of the time to its first write (issue 17: within 0.8 s of
process start; ``bench/startup.py``). So the first pass waits until start-up is over, counted
in objects made rather than in seconds (a loaded machine is slower, not more wasteful); it
frees start-up's own garbage, what survives it is frozen (``gc.freeze``) so that later passes,
the daemon's included, no longer walk it. From then on, the youngest generation is collected
every ``YOUNG_OBJECTS`` objects instead of every 700 (the older generations keep their
thresholds).

Must stay cheap to import (it is imported before everything else) and must not change what a
command does: only when the collector runs.
"""

from __future__ import annotations

import gc

START_UP_OBJECTS = 400_000
"""Objects (containers the collector tracks) that may pile up before its first pass.
``reconcile`` holds about 180,000 at its first write; a command that ends sooner never
collects, a long one (the daemon, a pass over thousands of organizations) collects once
past this, then every ``YOUNG_OBJECTS``."""

YOUNG_OBJECTS = 200_000
"""The youngest generation's threshold once start-up is over (CPython's default: 700).

Why: the daemon holds a large heap for as long as it runs (the informer cache, tens of objects
per assistant) and a resync pass makes and drops millions of short-lived ones. At 700, each
young collection traversed the young containers' references into that heap: at 20,000
assistants, collections took about 12% of a resync pass's CPU, among them full collections
of 0.3-0.4 s each. Most young objects are freed by their reference count long before
``YOUNG_OBJECTS`` more are made, so a collection finds fewer of them alive and runs hundreds
of times less often; the cyclic garbage it leaves waiting is a few megabytes at most (the
peak RSS did not move from 50,000 to 200,000). Measured with
``bench.run steady-state --orgs 10000 --passes 4``: 0.17-0.21 ms of CPU per assistant per
pass at 700, 0.12-0.16 at 50,000, with no full collection during the passes. At 200,000
(issue 17): the first pass after a start, which keeps verdicts for every organization,
spent 2 to 10% of its CPU collecting at 50,000 (four profiles) and 5% at 200,000 (one;
``--cpu-profile``'s garbage collection row): 0.098 to 0.099 ms per assistant in three runs
against 0.099 to 0.107 in four, at the same peak RSS (241 to 242 MB)."""


def main() -> None:
    usual = gc.get_threshold()

    def after_first_pass(phase: str, _info: dict[str, int]) -> None:
        if phase == "stop":
            gc.callbacks.remove(after_first_pass)
            gc.freeze()
            gc.set_threshold(YOUNG_OBJECTS, *usual[1:])

    gc.callbacks.append(after_first_pass)
    gc.set_threshold(START_UP_OBJECTS, *usual[1:])
    from controller.cli import main as command_line

    command_line()
