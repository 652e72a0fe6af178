"""Logging: JSON lines (loguru ``serialize``) off a terminal, readable lines on one.
Every record passes through ``redact`` so the master key never reaches a sink."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from loguru import logger

from controller.secret import redact

if TYPE_CHECKING:
    from loguru import Record

HUMAN = (
    "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> "
    "<cyan>{extra[org_id]}</cyan> {message}"
)


def _scrub(record: Record) -> None:
    record["message"] = redact(record["message"])
    record["extra"].setdefault("org_id", "-")
    if record["exception"] is not None:
        _, value, _ = record["exception"]
        if value is not None:
            value.args = tuple(redact(str(arg)) for arg in value.args)


class _ToLoguru(logging.Handler):
    """Libraries that log through the standard library (APScheduler, uvicorn) end up in the
    same sink, redacted like the rest."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname if record.levelname in _LEVELS else record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def configure_logging(*, level: str = "INFO", json: bool | None = None) -> None:
    as_json = not sys.stderr.isatty() if json is None else json
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.WARNING, force=True)
    logger.remove()
    logger.configure(patcher=_scrub)
    if as_json:
        logger.add(sys.stderr, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr, level=level, format=HUMAN, colorize=None, backtrace=False, diagnose=False
        )
