"""Hot reload of ``config.toml``: checked every ``reload_interval_seconds`` and on SIGHUP.

A file that disappeared, does not parse or does not validate changes nothing: the settings
in force stay (a moved file must never release ``paused = true``) and an ERROR says why.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from loguru import logger

from controller.config import ConfigError, Settings, load_settings

RESTART_ONLY = ("database", "server")


class ConfigWatcher:
    def __init__(self, path: Path, current: Settings) -> None:
        self.path = path
        self.current = current
        self._stamp = self._read_stamp()
        self.reloads = 0
        """Changes put in force so far."""
        self.failures = 0
        """Changed files refused so far (missing, unparsable, invalid)."""

    def changed(self, *, force: bool = False) -> Settings | None:
        """The new settings if the file changed (or ``force``) and is valid, else None."""
        stamp = self._read_stamp()
        if stamp == self._stamp and not force:
            return None
        self._stamp = stamp
        try:
            fresh = load_settings(self.path)
            fresh.require_backend_url()
        except ConfigError as exc:
            self.failures += 1
            logger.error("config not reloaded, keeping the settings in force: {}", exc)
            return None
        for section in RESTART_ONLY:
            if getattr(fresh, section) != getattr(self.current, section):
                logger.warning("[{}] changed: it takes effect after a restart", section)
        fresh = fresh.model_copy(
            update={section: getattr(self.current, section) for section in RESTART_ONLY}
        )
        if fresh == self.current:
            return None
        self.current = fresh
        self.reloads += 1
        return fresh

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)


Apply = Callable[[Settings, Settings], Awaitable[None]]
"""Put (before, fresh) settings in force."""


class Reloader:
    def __init__(self, watcher: ConfigWatcher, apply: Apply) -> None:
        self.watcher = watcher
        self.apply = apply

    async def check(self, *, force: bool) -> None:
        before = self.watcher.current
        fresh = self.watcher.changed(force=force)
        if fresh is None:
            return
        await self.apply(before, fresh)
        logger.info(
            "config reloaded: paused={} paused_orgs={} mode={} prune={}",
            fresh.controller.paused,
            len(fresh.controller.paused_orgs),
            fresh.controller.mode,
            fresh.controller.prune,
        )
