"""The process's entry point: the ``vapi-reconciler`` console script and ``python -m
controller``. The command line, with the cyclic garbage collector held off during start-up.

Why: start-up makes a few hundred thousand objects that live as long as the process (modules,
classes, functions, SQLAlchemy's and pydantic's tables); every pass of the collector while
they are made walks those made so far, to find no garbage. On ``reconcile`` those passes were
about a tenth of the time to its first write (issue 17: within 0.8 s of process start;
``bench/startup.py``). Once start-up is over the collector runs again, its first pass frees
start-up's own garbage, and what survives it is frozen (``gc.freeze``): later passes, the
daemon's included, no longer walk it.

Must stay cheap to import (it is imported before everything else) and must not change what a
command does: only when the collector runs.
"""

from __future__ import annotations

import gc
import threading

START_UP_SECONDS = 2.0
"""How long the collector is held off. Start-up, to ``reconcile``'s first write, takes under a
second; the margin is for a loaded machine. A command that ends sooner never collects."""


def main() -> None:
    gc.disable()
    resume = threading.Timer(START_UP_SECONDS, _collect_from_now_on)
    resume.daemon = True  # a command that ends sooner does not wait for it
    resume.start()
    from controller.cli import main as command_line

    command_line()


def _collect_from_now_on() -> None:
    gc.collect()
    gc.freeze()
    gc.enable()
