"""``chestlens evaluate BUNDLE``: clinical metrics with patient-bootstrap CIs on a split or any folder, for
classifier and segmenter bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from chestlens.cli.options import Quiet, check_out_folder


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (contains bundle.json).")],
    splits: Annotated[Path | None, typer.Option("--splits", help="Split CSV made by chestlens.")] = None,
    split: Annotated[str, typer.Option("--split", help="Which split of --splits to evaluate.")] = "test",
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Any folder in a supported layout: every labelled (or masked) case is test."
        ),
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="Data root for --splits (default $CHESTLENS_DATA).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", callback=check_out_folder, help="Report folder (default BUNDLE-eval-SPLIT)."
        ),
    ] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples over patients.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the headline numbers as JSON.")] = False,
    lung_baseline: Annotated[
        str | None,
        typer.Option(
            "--lung-baseline",
            help="Lesion segmenters: score the trivial baseline 'lesion = lung fields of this lung bundle' "
            "on the same data instead of the bundle.",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate a bundle: a classifier (within-source AUC of every binary question first, then pooled
    per-class metrics with 95% CIs, calibration, per-source tables) or a segmenter (per-class
    Dice/IoU/sensitivity/precision with 95% CIs, empty-mask cases, worst cases)."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.errors import ChestlensInputError
    from chestlens.evaluate.bundle_eval import evaluate_samples
    from chestlens.models.spec import read_spec

    if (splits is None) == (data is None):
        raise ChestlensInputError(bundle, "give exactly one of --splits CSV (with --split) or --data ROOT")
    label = split if splits is not None else "data"
    suffix = "-lung-baseline" if lung_baseline else ""
    out = out or bundle.with_name(f"{bundle.name}-eval-{label}{suffix}")
    summary, files = evaluate_samples(
        bundle, out, splits=splits, split=split, data=data, root=root, n_boot=n_boot, baseline=lung_baseline
    )
    if as_json:
        typer.echo(json.dumps({"summary": summary, "files": {k: str(v) for k, v in files.items()}}, indent=2))
        return
    if quiet:
        return
    (_echo_segmenter if read_spec(bundle).kind == "segmenter" else _echo_classifier)(summary)
    for warning in summary["warnings"]:
        typer.echo(f"  warning: {warning}")
    typer.echo(f"report: {files['html']}")
    typer.echo(RESEARCH_USE_DISCLAIMER)


def _echo_classifier(summary: dict[str, Any]) -> None:
    """Within-source AUCs first (each question, the per-source AUCs it pools), then the pooled numbers."""
    from chestlens.evaluate.bootstrap import estimate_text
    from chestlens.evaluate.tables import NOT_MEASURED, within_source_text
    from chestlens.evaluate.within_source import WITHIN_SOURCE_LIST

    within = WITHIN_SOURCE_LIST.validate_python(summary["within_source"])
    typer.echo(f"{summary['n_images']} images (95% CIs over patients)")
    typer.echo("within-source AUC (pairs of images from the same source only):")
    for line in [within_source_text(r) for r in within] or [NOT_MEASURED]:
        typer.echo(f"  {line}")
    pooled = estimate_text(summary["macro_auc"])
    typer.echo(f"pooled over sources ({summary['pooled_auc_scope']}): macro AUC {pooled}")
    for name, numbers in summary["per_class"].items():
        typer.echo(
            f"  {name}: AUC {estimate_text(numbers['auc'])}, "
            f"sensitivity {estimate_text(numbers['sensitivity'])}"
            f", specificity {estimate_text(numbers['specificity'])}"
        )


def _echo_segmenter(summary: dict[str, Any]) -> None:
    from chestlens.evaluate.bootstrap import estimate_text

    typer.echo(f"{summary['n_images']} images (95% CI over patients)")
    for name, numbers in summary["per_class"].items():
        typer.echo(
            f"  {name}: Dice {estimate_text(numbers['dice'])}, IoU {estimate_text(numbers['iou'])}, "
            f"Dice over all images {estimate_text(numbers['dice_all_images'])}"
        )
