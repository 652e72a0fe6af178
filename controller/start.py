"""The process's entry point: the ``vapi-reconciler`` console script and ``python -m
controller``. The command line, with the cyclic garbage collector held off during start-up.

Why: start-up makes a few hundred thousand objects that live as long as the process (modules,
classes, functions, SQLAlchemy's and pydantic's tables); every pass of the collector while
they are made walks those made so far, to find next to no garbage. On ``reconcile`` those
passes were about 250, some 75 ms of the time to its first write (issue 17: within 0.8 s of
process start; ``bench/startup.py``). So the first pass waits until start-up is over, counted
in objects made rather than in seconds (a loaded machine is slower, not more wasteful); it
frees start-up's own garbage, what survives it is frozen (``gc.freeze``) so that later passes,
the daemon's included, no longer walk it, and the collector's usual thresholds return.

Must stay cheap to import (it is imported before everything else) and must not change what a
command does: only when the collector runs.
"""

from __future__ import annotations

import gc

START_UP_OBJECTS = 400_000
"""Objects (containers the collector tracks) that may pile up before its first pass.
``reconcile`` holds about 180,000 at its first write; a command that ends sooner never
collects, a long one (the daemon, a pass over thousands of organizations) collects once
past this, then as usual."""


def main() -> None:
    usual = gc.get_threshold()

    def after_first_pass(phase: str, _info: dict[str, int]) -> None:
        if phase == "stop":
            gc.callbacks.remove(after_first_pass)
            gc.freeze()
            gc.set_threshold(*usual)

    gc.callbacks.append(after_first_pass)
    gc.set_threshold(START_UP_OBJECTS, *usual[1:])
    from controller.cli import main as command_line

    command_line()
