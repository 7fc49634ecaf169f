"""``chestlens models [NAME ...]``: bundled and user bundles with their headline test metrics; with one
NAME, that bundle's model card too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def _row(path: Path) -> dict[str, Any]:
    from chestlens.models.kinds import kind_of
    from chestlens.models.meaning import output_meaning
    from chestlens.models.spec import read_spec

    spec = read_spec(path)
    test = spec.metrics.get("test") or {}
    per_class = test.get("per_class") or {}
    dice = {label: scores["dice"] for label, scores in per_class.items() if "dice" in scores}
    cv = spec.metrics.get("cross_validation") or {}
    lopo = spec.metrics.get("lopo") or {}
    regional = test.get("regional classifier") or {}  # a regional bundle's test slices
    return {
        "name": spec.name,
        "version": spec.version,
        "kind": spec.kind,
        "task": spec.task,
        "architecture": spec.architecture,
        "input_size": spec.preprocess.input_size if kind_of(spec).image_input else None,
        "labels": spec.labels,
        "test_macro_auc": test.get("macro_auc"),
        "test_dice": dice or None,
        "test_images": test.get("n_images"),
        "cv_dice": {label: row["oof_mean_dice"] for label, row in (cv.get("classes") or {}).items()} or None,
        "cv_folds": cv.get("folds"),
        "cv_images": cv.get("n_images"),
        "test_slice_auc": regional.get("auc"),
        "test_slices": regional.get("n_slices"),
        "lopo_accuracy": lopo.get("accuracy"),
        "lopo_series": len(lopo.get("rows") or []) or None,
        "meaning": output_meaning(spec),
        "path": str(path),
    }


def _headline(row: dict[str, Any]) -> str:
    """The figure of a row that says most about new patients: the out-of-fold Dice of a segmenter whose
    recipe was cross-validated, else its test Dice per class; a study classifier's leave-one-patient-out
    accuracy; a regional slice classifier's test slice AUC; a classifier's test macro AUC."""
    from chestlens.evaluate.bootstrap import estimate_text

    def dice(values: dict[str, Any]) -> str:
        return ", ".join(f"{k} {estimate_text(v)}" for k, v in values.items())

    if row["cv_dice"]:
        return (
            f"CV Dice {dice(row['cv_dice'])} ({row['cv_folds']}-fold, {row['cv_images']} images out of fold)"
        )
    if row["test_dice"]:
        figure = f"Dice {dice(row['test_dice'])}"
    elif row["lopo_accuracy"] is not None:
        return f"leave-one-patient-out accuracy {row['lopo_accuracy']:.3f} on {row['lopo_series']} series"
    elif row["test_slice_auc"] is not None:
        return f"slice AUC {estimate_text(row['test_slice_auc'])} on {row['test_slices']} test slices"
    else:
        figure = "macro AUC " + estimate_text(row["test_macro_auc"] or None)
    return f"{figure} on {row['test_images']} images" if row["test_images"] else figure


def models(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Bundles to show (bundled names or folders); one: its model card too."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the bundled models (or the bundles named) with their test metrics; one NAME shows its card."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.models.catalog import bundled_names, resolve_bundle

    folders = [resolve_bundle(name) for name in names or bundled_names()]
    rows = [_row(folder) for folder in folders]
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
        "test figure (95% CI)",
        "path",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["version"],
            row["kind"],
            row["task"],
            row["architecture"],
            f"{row['input_size']} px" if row["input_size"] else "CT series",
            _headline(row),
            row["path"],
        )
    console = Console()
    console.print(table)
    for row in rows:
        if row["meaning"]:
            console.print(f"[bold]{row['name']}[/bold]: {row['meaning']}")
    card = folders[0] / "MODEL_CARD.md"
    if names and len(folders) == 1 and card.is_file():
        console.print(Markdown(card.read_text(encoding="utf-8")))
    console.print(RESEARCH_USE_DISCLAIMER)
