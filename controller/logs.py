"""Logging: one flat JSON object per line off a terminal, readable lines on one.

JSON lines carry ``ts`` (RFC 3339, UTC), ``level`` and ``msg``, then every bound value at the
top level: ``org_id``, ``agent_id``, ``reconcile_id``, ``vapi_id``, ``fields``, ``cause`` and
whatever else a call binds; an exception adds ``error`` and ``traceback``. Every string
passes through ``redact`` so the master key never reaches a sink.

Must not use loguru's ``serialize`` (it nests the record and adds source paths and icons),
and must not let a value that cannot be encoded drop a line (it is written as text).
"""

from __future__ import annotations

import json as jsonlib
import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from loguru import logger

from controller.config import Settings
from controller.secret import redact
from controller.version import package_version

if TYPE_CHECKING:
    from loguru import Message, Record

FIRST_KEYS = ("org_id", "agent_id", "reconcile_id", "vapi_id", "fields", "cause")
"""Bound values shown first, in this order (human lines) or right after ``msg`` (JSON)."""
_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def json_line(record: Record) -> str:
    """The record as one flat JSON object (no newline)."""
    out: dict[str, Any] = {
        "ts": record["time"].astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "level": record["level"].name,
        "msg": redact(record["message"]),
    }
    out.update(_bound(record["extra"]))
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        out["error"] = redact(f"{exception.type.__name__}: {exception.value}")
        out["traceback"] = redact(
            "".join(
                traceback.format_exception(exception.type, exception.value, exception.traceback)
            )
        )
    return jsonlib.dumps(out, ensure_ascii=False, default=str)


def human_line(record: Record) -> str:
    """``HH:MM:SS LEVEL   message key=value ...`` (no newline, no markup)."""
    bound = " ".join(f"{key}={_text(value)}" for key, value in _bound(record["extra"]).items())
    line = f"{record['time']:%H:%M:%S} {record['level'].name: <7} {redact(record['message'])}"
    if bound:
        line += f"  {bound}"
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        line += "\n" + redact(
            "".join(
                traceback.format_exception(exception.type, exception.value, exception.traceback)
            )
        ).rstrip("\n")
    return line


def _bound(extra: Mapping[str, Any]) -> dict[str, Any]:
    ordered = [k for k in FIRST_KEYS if k in extra] + sorted(
        k for k in extra if k not in FIRST_KEYS
    )
    return {key: _scrubbed(extra[key]) for key in ordered if extra[key] is not None}


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrubbed(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else jsonlib.dumps(value, default=str)


def log_banner(settings: Settings, *, config_path: Path) -> None:
    """The first line of ``run``: what runs, with what, against what (never a password)."""
    database = urlsplit(settings.database.url)
    vapi = urlsplit(settings.vapi.base_url)
    controller = settings.controller
    logger.bind(
        version=package_version(),
        config=str(config_path),
        mode=controller.mode,
        paused=controller.paused,
        paused_orgs=len(controller.paused_orgs),
        prune=controller.prune,
        database_host=f"{database.hostname or '?'}:{database.port or 5432}{database.path}",
        vapi_url=f"{vapi.scheme}://{vapi.hostname or ''}"
        + (f":{vapi.port}" if vapi.port else "")
        + vapi.path,
    ).info("vapi-reconciler {} starting", package_version())


class _Sink:
    """Writes each record as one line, JSON or human, to ``stream``."""

    def __init__(self, stream: TextIO, *, as_json: bool) -> None:
        self.stream = stream
        self.render = json_line if as_json else human_line

    def __call__(self, message: Message) -> None:
        self.stream.write(self.render(message.record) + "\n")
        self.stream.flush()


class _ToLoguru(logging.Handler):
    """Libraries that log through the standard library (APScheduler, uvicorn) end up in the
    same sink, redacted like the rest."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname if record.levelname in _LEVELS else record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def configure_logging(
    *, level: str = "INFO", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """JSON unless ``stream`` (stderr by default) is a terminal, or as ``json`` says."""
    stream = stream or sys.stderr
    as_json = not stream.isatty() if json is None else json
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.WARNING, force=True)
    logger.remove()
    logger.add(_Sink(stream, as_json=as_json), level=level, backtrace=False, diagnose=False)
