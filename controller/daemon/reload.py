"""Hot reload of ``config.toml``: checked every ``reload_interval_seconds`` and on SIGHUP. A
file that does not parse is reported and the settings in force stay."""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

from controller.config import ConfigError, Settings, load_settings

RESTART_ONLY = ("database", "server")


class ConfigWatcher:
    def __init__(self, path: Path, current: Settings) -> None:
        self.path = path
        self.current = current
        self._stamp = self._read_stamp()

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
        return fresh

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)
