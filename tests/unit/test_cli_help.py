"""``--help`` explains every command and every option."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from controller.cli import main

COMMANDS = sorted(main.commands)


def test_the_group_and_its_options_have_help() -> None:
    assert main.help
    assert all(p.help for p in main.params if isinstance(p, click.Option))


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_of_every_command_is_explained(name: str) -> None:
    command = main.commands[name]
    undocumented = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]

    assert command.help, name
    assert undocumented == []
    assert CliRunner().invoke(main, [name, "--help"]).exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--org", "not-a-uuid"],
        ["reconcile", "--no-such-option"],
        ["status", "--limit"],
        ["no-such-command"],
    ],
)
def test_a_command_line_that_cannot_be_parsed_exits_1_never_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output


def test_plan_with_a_missing_config_file_exits_1_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["plan", "--config", str(tmp_path / "absent.toml")])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "no such config file" in result.output
