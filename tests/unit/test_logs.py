"""Log lines: one flat JSON object per line off a terminal, readable lines on one, the start-up
banner, and the master key redacted everywhere, exceptions included."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from controller.config import Settings
from controller.logs import configure_logging, log_banner
from controller.secret import MasterKey, register_secret, scrub

KEY = "canary-master-key-4242424242"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    register_secret(MasterKey(KEY))
    out = io.StringIO()
    configure_logging(level="DEBUG", json=True, stream=out)
    yield out
    configure_logging(level="INFO", json=False, stream=io.StringIO())


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_is_flat_with_ts_level_msg_and_the_bound_values(stream: io.StringIO) -> None:
    logger.bind(
        org_id="org-1",
        agent_id="agent-1",
        reconcile_id="r1",
        vapi_id="asst-1",
        fields=["name", "voice"],
        cause="drift",
    ).info("updated {}", "asst-1")

    (line,) = lines(stream)

    assert list(line) == [
        "ts",
        "level",
        "msg",
        "org_id",
        "agent_id",
        "reconcile_id",
        "vapi_id",
        "fields",
        "cause",
    ]
    assert line["ts"].endswith("Z")
    assert "T" in line["ts"]
    assert (line["level"], line["msg"], line["fields"]) == (
        "INFO",
        "updated asst-1",
        ["name", "voice"],
    )


def test_a_json_line_carries_no_source_path_icon_or_nested_record(stream: io.StringIO) -> None:
    logger.warning("careful")

    (line,) = lines(stream)

    assert set(line) == {"ts", "level", "msg"}
    assert ".py" not in stream.getvalue()


def test_the_master_key_is_redacted_from_messages_bound_values_and_tracebacks(
    stream: io.StringIO,
) -> None:
    try:
        raise RuntimeError(f"refused {KEY}")
    except RuntimeError:
        logger.bind(detail={"header": f"Bearer {KEY}"}).exception("call with {}", KEY)

    (line,) = lines(stream)

    assert KEY not in stream.getvalue()
    assert line["error"] == "RuntimeError: refused ***"
    assert "Traceback" in line["traceback"]


def test_a_value_json_cannot_encode_is_written_as_text(stream: io.StringIO) -> None:
    logger.bind(path=Path("relative/x")).info("odd value")

    assert lines(stream)[0]["path"] == "relative/x"


def test_human_lines_read_as_time_level_message_and_bound_values() -> None:
    out = io.StringIO()
    configure_logging(level="INFO", json=False, stream=out)
    logger.bind(org_id="org-1", cause="drift").info("updated")

    text = out.getvalue()
    assert text.endswith("INFO    updated  org_id=org-1 cause=drift\n")
    assert not text.startswith("{")


def test_the_start_up_banner_names_version_config_mode_database_host_and_vapi_url(
    stream: io.StringIO,
) -> None:
    settings = Settings.model_validate(
        {
            "database": {"url": "postgresql://ctl:hunter2@db.internal:6543/platform"},
            "controller": {"mode": "observe", "paused": True},
        }
    )

    log_banner(settings, config_path=Path("/etc/vapi-reconciler/config.toml"))

    (line,) = lines(stream)
    assert line["msg"].startswith("vapi-reconciler ")
    assert line["msg"].endswith(" starting")
    assert line["config"] == "/etc/vapi-reconciler/config.toml"
    assert (line["mode"], line["paused"]) == ("observe", True)
    assert line["database_host"] == "db.internal:6543/platform"
    assert line["vapi_url"] == "https://api.vapi.ai"
    assert "hunter2" not in stream.getvalue()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"server": {"url": "https://x", "secret": "s"}},
            {"server": {"url": "https://x", "secret": "***"}},
        ),
        ({"apiKey": "k", "maxTokens": 250}, {"apiKey": "***", "maxTokens": 250}),
        ("use sk-live-abcdefghijkl now", "use *** now"),
        ("Bearer abcdefghijklmnop", "***"),
        ([{"accessToken": "t"}], [{"accessToken": "***"}]),
        (f"the key {KEY}", "the key ***"),
    ],
)
def test_scrub_redacts_secret_keys_secret_shaped_text_and_the_master_key(
    value: Any, expected: Any
) -> None:
    register_secret(MasterKey(KEY))

    assert scrub(value) == expected
