"""One CLI convention for every command: plain value names and help text for every option in
``--help`` (groups and the root too), ``--json`` always a flag (JSON on stdout), ``-o`` beside every
``--out``, ``-q`` wherever a command shows progress, one checked spelling of ``--device`` and
``--runtime``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from chestlens.cli import app
from chestlens.cli.help_types import plain_label
from chestlens.cli.options import check_device, check_runtime

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
#: The root and every group (``data``, ``train``, ``export``): their help lists commands, not options.
GROUPS = [(), *sorted({path[:-1] for path in COMMANDS if len(path) > 1})]
#: Commands that draw progress bars or print tables and counts while they work.
SHOW_PROGRESS = [
    ("predict",),
    ("demo",),
    ("evaluate",),
    ("evaluate-series",),
    ("train", "classify"),
    ("train", "segment"),
    ("train", "detect"),
]


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


@pytest.mark.parametrize("path", GROUPS, ids=lambda path: " ".join(path) or "chestlens")
def test_group_help_has_no_internal_type_names(path):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert not TYPER_TYPE_NAME.search(result.output), result.output
    assert "Commands" in result.output


@pytest.mark.parametrize("path", SHOW_PROGRESS, ids=" ".join)
def test_commands_that_show_progress_take_q(path):
    quiet = [p for p in _options(COMMANDS[path]) if "-q" in p.opts]
    assert quiet and "--quiet" in quiet[0].opts and quiet[0].is_flag


def test_device_and_runtime_are_checked_the_same_way_everywhere():
    for path, command in COMMANDS.items():
        for p in _options(command):
            if "--device" in p.opts:
                assert p.callback is not None and p.callback.__wrapped__ is check_device, path
            if "--runtime" in p.opts:
                assert p.callback is not None and p.callback.__wrapped__ is check_runtime, path
