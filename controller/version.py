"""The installed package's version, for ``--version``, the start-up banner, the daemon's
heartbeat and ``build_info``. Must not import anything of the controller."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def package_version() -> str:
    try:
        return version("vapi-reconciler")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
