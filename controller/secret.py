"""The master Vapi key: where it may come from, and how it is kept out of every output.

Why: one key controls every organization's assistants. It is read from ``VAPI_PRIVATE_KEY``
or the file named by ``VAPI_PRIVATE_KEY_FILE`` and from nowhere else. It must never be
formatted into text: ``MasterKey`` renders as ``***`` and ``redact`` scrubs any string that
leaves the process.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REDACTED = "***"


class MissingKeyError(Exception):
    """No Vapi key is configured."""


class MasterKey:
    """The key, kept out of ``str``, ``repr`` and f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value.strip():
            raise MissingKeyError("the Vapi key is empty")
        self._value = value.strip()

    def reveal(self) -> str:
        """The key itself: only for the Authorization header."""
        return self._value

    def __repr__(self) -> str:
        return f"MasterKey({REDACTED})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)


def read_master_key(environ: dict[str, str] | None = None) -> MasterKey:
    env = dict(os.environ) if environ is None else environ
    if env.get("VAPI_PRIVATE_KEY"):
        return MasterKey(env["VAPI_PRIVATE_KEY"])
    if env.get("VAPI_PRIVATE_KEY_FILE"):
        path = Path(env["VAPI_PRIVATE_KEY_FILE"])
        try:
            return MasterKey(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise MissingKeyError(
                f"cannot read VAPI_PRIVATE_KEY_FILE {path}: {exc.strerror}"
            ) from None
    raise MissingKeyError("set VAPI_PRIVATE_KEY or VAPI_PRIVATE_KEY_FILE")


_known_secrets: set[str] = set()


def register_secret(key: MasterKey) -> None:
    """Remember ``key`` so ``redact`` scrubs it from any text."""
    _known_secrets.add(key.reveal())


def redact(text: str) -> str:
    for secret in _known_secrets:
        text = text.replace(secret, REDACTED)
    return text


_SECRET_KEY = re.compile(
    r"secret|password|passwd|credential|authorization|api[_-]?key|private[_-]?key"
    r"|(?:access|auth|bearer|refresh)[_-]?token|^token$",  # not maxTokens
    re.IGNORECASE,
)
_SECRET_TEXT = re.compile(
    r"\b(?:sk|pk|rk)[-_](?:live[-_]|test[-_])?[A-Za-z0-9_-]{8,}"  # API keys by their prefix
    r"|\bBearer\s+[A-Za-z0-9._~+/=-]{8,}",  # a bearer token
    re.IGNORECASE,
)


def scrub(value: Any, *, key: str = "") -> Any:
    """``value`` (plain JSON data) fit to store or show: the master key redacted, a value held
    under a secret-shaped key (``secret``, ``apiKey``, ``accessToken``, ...) replaced whole, and
    secret-shaped text (``sk-...``, ``Bearer ...``) masked wherever it appears."""
    if key and value is not None and _secret_key(key):
        return REDACTED
    if isinstance(value, str):
        return _SECRET_TEXT.sub(REDACTED, redact(value))
    if value is None or isinstance(value, bool | int | float):  # before the ABC check below
        return value
    if isinstance(value, dict | Mapping):  # a dict first: the common case, and cheap
        return {k: scrub(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, key=key) for v in value]
    return value


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    """Bodies repeat the same few hundred keys: each is matched once."""
    return _SECRET_KEY.search(key) is not None
