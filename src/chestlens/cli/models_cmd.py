"""``chestlens models``: bundled and user bundles with their headline test metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def _row(path: Path) -> dict[str, Any]:
    from chestlens.models.meaning import output_meaning
    from chestlens.models.spec import read_spec

    spec = read_spec(path)
    test = spec.metrics.get("test") or {}
    return {
        "name": spec.name,
        "version": spec.version,
        "kind": spec.kind,
        "task": spec.task,
        "architecture": spec.architecture,
        "input_size": spec.preprocess.input_size,
        "labels": spec.labels,
        "test_macro_auc": test.get("macro_auc"),
        "test_images": test.get("n_images"),
        "meaning": output_meaning(spec),
        "path": str(path),
    }


def models(
    paths: Annotated[list[Path] | None, typer.Argument(help="Extra bundle folders to list.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the bundled models (and any bundle folders given) with their test metrics."""
    from rich.console import Console
    from rich.table import Table

    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.evaluate.bootstrap import estimate_text
    from chestlens.models.catalog import BUNDLED_DIR, bundled_names

    rows = [_row(BUNDLED_DIR / name) for name in bundled_names()] + [_row(p) for p in paths or []]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="chestlens models")
    for column in (
        "name",
        "version",
        "kind",
        "task",
        "architecture",
        "input",
        "test macro AUC (95% CI)",
        "path",
    ):
        table.add_column(column)
    for row in rows:
        auc = estimate_text(row["test_macro_auc"] or None)
        table.add_row(
            row["name"],
            row["version"],
            row["kind"],
            row["task"],
            row["architecture"],
            f"{row['input_size']} px",
            f"{auc} on {row['test_images']} images" if row["test_images"] else auc,
            row["path"],
        )
    console = Console()
    console.print(table)
    for row in rows:
        if row["meaning"]:
            console.print(f"[bold]{row['name']}[/bold]: {row['meaning']}")
    console.print(RESEARCH_USE_DISCLAIMER)
