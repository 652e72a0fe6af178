"""Settings: defaults for every key, the environment wins, bad files fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import ConfigError, load_settings
from controller.daemon.reload import ConfigWatcher
from controller.secret import MasterKey, MissingKeyError, read_master_key, redact, register_secret


def test_a_missing_file_is_an_error_unless_the_command_allows_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "absent.toml", environ={})
    settings = load_settings(tmp_path / "absent.toml", environ={}, required=False)
    assert settings.controller.mode == "enforce"
    assert settings.alerting.unreconciled_after_seconds == 600


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[defaults]\nvoice_provider = "elevenlab"\n', "voice provider 'elevenlab' is unknown"),
        ('[defaults]\nvoice = " "\n', "voice is empty"),
        ('[server]\nlisten = "localhost"\n', "is not HOST:PORT"),
        ('[server]\nlisten = "127.0.0.1:99999"\n', "is not HOST:PORT"),
    ],
)
def test_an_invalid_default_or_listen_address_is_refused_when_read(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ={})


def test_a_config_file_that_disappears_keeps_the_settings_in_force(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('backend_url = "https://api.platform.example"\n[controller]\npaused = true\n')
    watcher = ConfigWatcher(path, load_settings(path, environ={}))
    path.unlink()
    assert watcher.changed(force=True) is None
    assert watcher.current.controller.paused is True


def test_the_shipped_config_file_is_valid() -> None:
    shipped = Path(__file__).resolve().parents[2] / "config.toml"
    assert load_settings(shipped, environ={}).controller.paused is False


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"BACKEND_URL": "http://api.platform.example"}, "https outside development"),
        ({"BACKEND_URL": "https://user:pw@api.platform.example"}, "credentials"),
        ({"BACKEND_URL": "https://api.platform.example/?next=evil"}, "query"),
        ({"BACKEND_URL": "ftp://api.platform.example"}, "absolute http"),
        ({"BACKEND_URL": "api.platform.example"}, "absolute http"),
    ],
)
def test_a_webhook_base_that_is_not_plain_https_is_refused(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(
            tmp_path / "absent.toml", environ=environ, required=False
        ).require_backend_url()


def test_http_webhooks_only_in_development(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('environment = "development"\n')
    settings = load_settings(path, environ={"BACKEND_URL": "http://localhost:8000"})
    assert settings.require_backend_url() == "http://localhost:8000"
    with pytest.raises(ConfigError, match="BACKEND_URL is not set"):
        load_settings(path, environ={}).require_backend_url()


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\nurl = "postgresql://file/db"\n[vapi]\nbase_url = "http://f"\n')
    settings = load_settings(path, environ={"DATABASE_URL": "postgresql://env/db"})
    assert settings.database.url == "postgresql://env/db"
    assert settings.vapi.base_url == "http://f"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[controller]\nmode = 'yolo'\n", "controller.mode"),
        ("[controller]\npaused_orgs = ['not-a-uuid']\n", "controller.paused_orgs"),
        ("[controler]\npaused = true\n", "controler"),
        ("[controller\n", "not valid TOML"),
    ],
)
def test_a_bad_file_fails_with_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ={})


def test_the_key_comes_from_the_environment_or_its_file_and_never_prints(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("file-key-123\n")
    key = read_master_key({"VAPI_PRIVATE_KEY_FILE": str(secret_file)})
    assert key.reveal() == "file-key-123"
    assert "file-key-123" not in f"{key} {key!r} {key!s}"
    register_secret(key)
    assert redact("Bearer file-key-123 leaked") == "Bearer *** leaked"
    with pytest.raises(MissingKeyError):
        read_master_key({})
    with pytest.raises(MissingKeyError):
        MasterKey("   ")


def test_a_reload_to_an_unsafe_webhook_base_keeps_the_settings_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BACKEND_URL", raising=False)
    path = tmp_path / "c.toml"
    path.write_text('backend_url = "https://api.platform.example"\n')
    watcher = ConfigWatcher(path, load_settings(path))
    for unsafe in ('backend_url = "http://api.platform.example"\n', "[controller]\n"):
        path.write_text(unsafe)
        assert watcher.changed(force=True) is None
    path.write_text('backend_url = "https://api2.platform.example"\n')
    reloaded = watcher.changed(force=True)
    assert reloaded is not None
    assert reloaded.backend_url == "https://api2.platform.example"
