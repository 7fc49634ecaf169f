"""Value names in ``--help`` as a user reads them: TEXT, PATH, INTEGER, FLOAT, or nothing for a flag.

Typer (0.29) labels each parameter with its Python annotation, e.g. ``<bool>`` for a flag and
``<list[Path]>`` for a repeatable path. :func:`use_plain_type_names` replaces that label, for every
command of the process, with the names click itself uses; ``tests/test_cli_help.py`` guards the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from typer.core import _TyperParameter

PLAIN_NAMES = {
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float": "FLOAT",
    "float range": "FLOAT",
    "bool": "BOOLEAN",
    "path": "PATH",
    "Path": "PATH",
    "file": "FILE",
    "directory": "DIRECTORY",
    "datetime": "DATETIME",
}


def plain_label(typer_label: str) -> str:
    """``"<list[Path]>"`` -> ``"PATH"``, ``"<int range>"`` -> ``"INTEGER"``; choices stay ``a|b``."""
    label = typer_label.removeprefix("<").removesuffix(">")
    if label.startswith("list[") and label.endswith("]"):
        label = label[len("list[") : -1]
    return PLAIN_NAMES.get(label, label)


def _plain_display_type(typer_display_type: Callable[..., str]) -> Callable[..., str | None]:
    def display_type(param: _TyperParameter, ctx: Any) -> str | None:
        """The value name shown in help: click's plain names, none for a flag."""
        if getattr(param, "is_flag", False):
            return None  # a flag takes no value
        return plain_label(typer_display_type(param, ctx))

    display_type.chestlens_plain = True  # type: ignore[attr-defined]
    return display_type


def use_plain_type_names() -> None:
    """Show plain value names in every command's ``--help`` (idempotent)."""
    if not getattr(_TyperParameter.display_type, "chestlens_plain", False):
        _TyperParameter.display_type = _plain_display_type(_TyperParameter.display_type)  # type: ignore[method-assign]
