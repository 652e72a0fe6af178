"""``--help`` explains every command and every option."""

from __future__ import annotations

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
