"""``chestlens evaluate BUNDLE``: clinical metrics with patient-bootstrap CIs on a split or any folder, for
a bundle of any kind (:mod:`chestlens.evaluate.kinds`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from chestlens.cli.options import Quiet, check_out_folder


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def _screen_study_series(root: Path, lesion_bundle: str, regional: Path | None) -> list:
    """Study bundles: the labelled CT series under ``root`` screened with ``lesion_bundle`` (and read by
    the ``regional`` bundle, when the study bundle embeds one; the pipeline sits above the evaluation
    layer, so the command hands this in)."""
    from chestlens.pipeline.study_data import screen_study_series

    return screen_study_series(root, lesion_bundle, regional=regional)


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
    per-class metrics with 95% CIs, calibration, per-source tables), a segmenter (per-class
    Dice/IoU/sensitivity/precision with 95% CIs, empty-mask cases, worst cases), a detector (COCO mask
    and box AP per class with 95% CIs), a regional slice classifier (slice AUC, sensitivity and
    specificity per COVID-CT-MD patient, --data only) or a CT study classifier (every labelled CT series
    under --data screened: per-series predictions, accuracy, confusion matrix)."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.errors import ChestlensInputError
    from chestlens.evaluate.kinds import EvaluationRequest, evaluate_bundle, evaluation_of
    from chestlens.models.spec import read_spec

    if (splits is None) == (data is None):
        raise ChestlensInputError(bundle, "give exactly one of --splits CSV (with --split) or --data ROOT")
    label = split if splits is not None else "data"
    suffix = "-lung-baseline" if lung_baseline else ""
    out = out or bundle.with_name(f"{bundle.name}-eval-{label}{suffix}")
    request = EvaluationRequest(
        out,
        splits=splits,
        split=split,
        data=data,
        root=root,
        n_boot=n_boot,
        baseline=lung_baseline,
        series_features=_screen_study_series,
    )
    summary, files = evaluate_bundle(bundle, request)
    if as_json:
        typer.echo(json.dumps({"summary": summary, "files": {k: str(v) for k, v in files.items()}}, indent=2))
        return
    if quiet:
        return
    for line in evaluation_of(read_spec(bundle)).summary_lines(summary):
        typer.echo(line)
    for warning in summary.get("warnings", []):
        typer.echo(f"  warning: {warning}")
    typer.echo(f"report: {files.get('html', files.get('md'))}")
    typer.echo(RESEARCH_USE_DISCLAIMER)
