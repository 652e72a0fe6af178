"""The event loop every command runs on: uvloop where it is installed (Linux, macOS), else
asyncio's own. uvloop's loop costs a fraction of asyncio's per callback and socket event: a
quarter of the daemon's CPU in a cold-start profile was the loop itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
