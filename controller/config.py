"""Settings: ``config.toml`` overlaid by the environment.

Why: one typed, validated view of every knob, with a default for each so a partial file is
valid. It must not read the Vapi key (see ``controller.secret``) and must not do any other I/O
than reading the file it is given.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller.core.desired import fingerprint
from controller.core.settings import VOXANNE, PruneBounds, RenderDefaults


class ConfigError(Exception):
    """The configuration file or environment is invalid; the message says where."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControllerSettings(_Section):
    paused: bool = False
    paused_orgs: tuple[UUID, ...] = ()
    mode: Literal["enforce", "observe"] = "enforce"
    prune: bool = False
    max_prune_per_pass: int = Field(default=10, ge=0)
    max_prune_fraction: float = Field(default=0.10, ge=0.0, le=1.0)
    concurrency: int = Field(default=8, ge=1, le=256)
    resync_interval_seconds: float = Field(default=300.0, gt=0)
    resync_jitter: float = Field(default=0.1, ge=0, le=0.5)
    backoff_base_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    lease_seconds: float = Field(default=60.0, ge=2)
    idle_poll_seconds: float = Field(default=1.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    reload_interval_seconds: float = Field(default=1.0, gt=0, le=5)
    stall_seconds: float = Field(default=300.0, gt=0)
    max_update_percent: float = Field(default=20.0, ge=0, le=100)
    canary_percent: float = Field(default=1.0, gt=0, le=100)
    confirm_rollout: str = ""


class AlertingSettings(_Section):
    unreconciled_after_seconds: int = Field(default=600, ge=0)
    failures_before_alert: int = Field(default=0, ge=0)
    webhook_url: str = ""
    alertmanager_url: str = ""
    evaluate_interval_seconds: float = Field(default=5.0, gt=0)
    delivery_timeout_seconds: float = Field(default=5.0, gt=0)
    delivery_backoff_max_seconds: float = Field(default=300.0, gt=0)
    controller_down_after_seconds: float = Field(default=300.0, ge=0)


class VapiSettings(_Section):
    base_url: str = "https://api.vapi.ai"
    rate_limit_per_second: float = Field(default=10.0, gt=0)
    burst: int = Field(default=10, ge=1)
    timeout_seconds: float = Field(default=15.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    page_limit: int = Field(default=1000, ge=1, le=1000)
    poll_interval_seconds: float = Field(default=10.0, gt=0)
    relist_interval_seconds: float = Field(default=600.0, gt=0)
    relist_budget_share: float = Field(default=0.05, ge=0, le=1)


class RenderSettings(_Section):
    profile: Literal["default", "voxanne"] = "default"
    voxanne: RenderDefaults = VOXANNE


class AuditSettings(_Section):
    keep_days: int = Field(default=30, ge=1)


class DatabaseSettings(_Section):
    url: str = ""


class ServerSettings(_Section):
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464)")
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class Settings(_Section):
    controller: ControllerSettings = ControllerSettings()
    alerting: AlertingSettings = AlertingSettings()
    audit: AuditSettings = AuditSettings()
    vapi: VapiSettings = VapiSettings()
    defaults: RenderDefaults = RenderDefaults()
    render: RenderSettings = RenderSettings()
    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    environment: Literal["production", "development"] = "production"
    backend_url: str = ""

    def require_backend_url(self) -> str:
        """The base of every webhook URL the controller writes. Checked by the commands that
        write or plan them (and by a hot reload), not by ``status`` or ``migrate``: unset,
        malformed, carrying credentials, or http outside development, they refuse to go on."""
        value = self.backend_url
        if not value:
            raise ConfigError("BACKEND_URL is not set (or backend_url in the config file)")
        parts = urlsplit(value)
        problem = ""
        if parts.scheme not in ("https", "http") or not parts.hostname:
            problem = "must be an absolute http(s) URL"
        elif parts.username is not None or parts.password is not None:
            problem = "must not carry credentials: Vapi would store them in every body"
        elif parts.query or parts.fragment:
            problem = "must not carry a query or a fragment: paths are appended to it"
        elif parts.scheme == "http" and self.environment != "development":
            problem = (
                "webhook targets must be https outside development "
                '(set environment = "development" to allow http)'
            )
        if problem:
            raise ConfigError(f"backend_url {value!r}: {problem}")
        return value

    @property
    def rendering(self) -> RenderDefaults:
        """The render profile in force: ``[defaults]``, or ``[render.voxanne]``."""
        return self.defaults if self.render.profile == "default" else self.render.voxanne

    @property
    def render_digest(self) -> str:
        """Fingerprint of what every body is rendered with besides its row: the profile in
        force and ``BACKEND_URL``. A change of it is a configuration-caused rollout."""
        return _render_digest(self.rendering, self.backend_url)

    @property
    def prune_bounds(self) -> PruneBounds:
        return PruneBounds(self.controller.max_prune_per_pass, self.controller.max_prune_fraction)

    def is_paused(self, org_id: UUID) -> bool:
        return self.controller.paused or org_id in self.controller.paused_orgs

    @property
    def writes_enabled(self) -> bool:
        return self.controller.mode == "enforce" and not self.controller.paused


@lru_cache(maxsize=8)
def _render_digest(rendering: RenderDefaults, backend_url: str) -> str:
    """Asked once per reconcile: computed once per distinct profile and base URL."""
    digest = fingerprint({"render": rendering.model_dump(mode="json"), "backend_url": backend_url})
    return digest[:16]


_ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "DATABASE_URL": ("database", "url"),
    "VAPI_BASE_URL": ("vapi", "base_url"),
    "BACKEND_URL": ("backend_url",),
}


def load_settings(
    path: Path, *, environ: dict[str, str] | None = None, required: bool = True
) -> Settings:
    """Read ``path`` and apply the environment over it. A missing file is an error unless
    ``required`` is False (then it means all defaults)."""
    env = dict(os.environ) if environ is None else environ
    raw: dict[str, object] = {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"{path}: no such config file (give one with --config PATH; "
                "config.toml in the repository documents every key)"
            ) from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for var, keys in _ENV_OVERRIDES.items():
        if env.get(var):
            _set_path(raw, keys, env[var])
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            ": ".join(filter(None, (".".join(str(p) for p in err["loc"]), err["msg"])))
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


def _set_path(raw: dict[str, object], keys: tuple[str, ...], value: str) -> None:
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"[{key}] must be a table")
        node = child
    node[keys[-1]] = value
