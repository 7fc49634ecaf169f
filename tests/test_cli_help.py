"""One CLI convention for every command: plain value names and help text for every option in
``--help``, ``--json`` always a flag (JSON on stdout), ``-o`` beside every ``--out``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from chestlens.cli import app
from chestlens.cli.help_types import plain_label

TYPER_TYPE_NAME = re.compile(r"<(bool|str|int|float|path|Path|list|file|directory)\b")


def _commands(command=None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    """(name path, click command) of every leaf command of the CLI."""
    command = command or typer.main.get_command(app)
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands())


def _options(command) -> list:
    return [p for p in command.params if p.param_type_name == "option"]


def test_plain_labels():
    assert plain_label("<list[Path]>") == "PATH"
    assert plain_label("<int range>") == "INTEGER"
    assert plain_label("<str>") == "TEXT"
    assert plain_label("<sqlite|postgresql>") == "sqlite|postgresql"


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_help_has_plain_types_and_help_for_every_option(path):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert not TYPER_TYPE_NAME.search(result.output), result.output
    missing = [p.opts[0] for p in _options(COMMANDS[path]) if not p.help]
    assert not missing, f"{' '.join(path)}: options without help text: {missing}"


def test_json_is_a_flag_everywhere():
    takes_a_value = [
        " ".join(path)
        for path, command in COMMANDS.items()
        for p in _options(command)
        if "--json" in p.opts and not p.is_flag
    ]
    assert not takes_a_value


def test_every_out_has_a_short_o():
    without_short = [
        " ".join(path)
        for path, command in COMMANDS.items()
        for p in _options(command)
        if "--out" in p.opts and "-o" not in p.opts
    ]
    assert not without_short
