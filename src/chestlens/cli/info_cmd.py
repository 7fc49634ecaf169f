"""``chestlens info PATH``: what chestlens reads from a file or a DICOM series folder.

Never prints patient names, ids or birth dates: it shows :func:`chestlens.io.describe`, which holds
only de-identified metadata (salted keys).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from chestlens.io import describe


def register(app: typer.Typer) -> None:
    """Add the ``info`` command to the CLI."""
    app.command("info")(info)


def info(
    path: Annotated[
        Path, typer.Argument(help="Image file (DICOM, PNG, JPEG, TIFF, BMP, NIfTI) or DICOM series folder.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON for machines instead of a table.")
    ] = False,
) -> None:
    """Show format, transfer syntax, modality, size, spacing, value range and series order."""
    summary = describe(path)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    Console().print(summary_table(summary))


def summary_table(summary: dict[str, Any]) -> Table:
    """Two-column rich table of a :func:`describe` result (nested entries flattened)."""
    table = Table(title=f"chestlens info: {summary['path']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in summary.items():
        if key == "path":
            continue
        if key == "series" and isinstance(value, dict):
            for sub_key, sub_value in value.items():
                table.add_row(f"series.{sub_key}", _text(sub_value))
        else:
            table.add_row(key, _text(value))
    return table


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict) and set(value) == {"uid", "name"}:
        return f"{value['name']} ({value['uid']})"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, str) for v in value):
            return "\n".join(value)
        return "[" + ", ".join(_text(v) for v in value) + "]" if value else "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
