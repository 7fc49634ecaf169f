"""``chestlens evaluate-series SERIES``: screen a whole CT series and compare it with its slice labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chestlens.cli.options import Device, Quiet, RuntimeOption, check_out_folder


def register(app: typer.Typer) -> None:
    app.command("evaluate-series")(evaluate_series)
    app.command("calibrate-series")(calibrate_series)


def _silent(text: str) -> None:
    """``typer.echo`` under ``-q``: prints nothing (errors are raised, never echoed)."""


def evaluate_series(
    series: Annotated[Path, typer.Argument(help="Folder of one DICOM CT series.")],
    lesions: Annotated[
        str, typer.Option("--lesions", help="CT lesion segmenter bundle (folder or bundled name).")
    ] = "lesions-ct-segmenter",
    out: Annotated[
        Path, typer.Option("--out", "-o", callback=check_out_folder, help="Folder for the results.")
    ] = Path("chestlens-series"),
    n_boot: Annotated[int, typer.Option("--n-boot", help="Block-bootstrap resamples.")] = 1000,
    runtime: RuntimeOption = "onnx",
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Per-slice lesion masks and scores, lesion volume in mL per class, the share of the lungs involved, a
    series score and the series verdict (lesions found when the lungs involved reach a threshold); with
    COVID-CT-MD slice labels found for the series, the slice-level AUC, sensitivity and specificity (95% CI
    by a block bootstrap over consecutive slices). Writes result.json, overlays, and slice-report.json/.md
    with a slice profile PNG."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.atomic import write_text_atomic
    from chestlens.cli.progress import SliceBar
    from chestlens.data.sources.covid_ct_md import slice_labels
    from chestlens.errors import ChestlensInputError
    from chestlens.evaluate.bootstrap import estimate_text
    from chestlens.evaluate.ct_series import compare_slices, slice_report_markdown
    from chestlens.evaluate.plots import save_png, slice_profile_figure
    from chestlens.pipeline.overlay import save_overlays
    from chestlens.pipeline.screener import Screener

    echo = _silent if quiet else typer.echo
    with SliceBar(disable=quiet) as slices:
        screener = Screener(
            classifier=None,
            lungs=None,
            lesions=[lesions],
            runtime=runtime,
            device=device,
            cam=None,
            progress=slices,
        )
        screening = screener.screen(series)
    result = screening.result
    summary = result.lesions
    if not screening.image.is_volume or summary is None or summary.slice_scores is None:
        reason = (
            "; ".join(result.notes + [c.detail for c in result.gate.checks if not c.passed]) or "no lesions"
        )
        raise ChestlensInputError(series, f"not screened as a CT series with lesions: {reason}")
    write_text_atomic(out / "result.json", result.model_dump_json(indent=2) + "\n")
    save_overlays(screening, out, "series")
    volumes = ", ".join(f"{k} {v:.1f} mL" for k, v in summary.volume_ml_by_label.items())
    echo(f"{series.name}: {len(summary.slice_scores)} slices; lesion volume {volumes or 'n/a'}")
    involved = summary.lung_fraction_total
    verdict = (
        ""
        if summary.series_verdict is None or summary.series_threshold is None
        else f"; {summary.series_verdict} (threshold {100 * summary.series_threshold:.2f}% of the lungs)"
    )
    echo(
        f"lungs involved: {'n/a' if involved is None else f'{100 * involved:.2f}%'}; "
        f"series score {summary.series_score}{verdict}"
    )
    try:
        labels = [label.infected for label in slice_labels(series)]
    except ChestlensInputError as error:
        echo(f"no slice labels to compare with: {error.reason}")
        echo(RESEARCH_USE_DISCLAIMER)
        return
    report = compare_slices(
        series.name,
        summary.slice_scores,
        labels,
        series_score=summary.series_score or 0.0,
        series_verdict=summary.series_verdict,
        series_threshold=summary.series_threshold,
        lung_fraction_total=summary.lung_fraction_total,
        volume_ml_by_label=summary.volume_ml_by_label,
        lung_fraction_by_label=summary.lung_fraction_by_label,
        n_boot=n_boot,
    )
    write_text_atomic(out / "slice-report.json", report.model_dump_json(indent=2) + "\n")
    lines = slice_report_markdown(report)
    write_text_atomic(out / "slice-report.md", "\n".join(lines) + "\n")
    title = f"{series.name}: slice AUC {estimate_text(report.auc)}"
    save_png(slice_profile_figure(summary.slice_scores, labels, title), out / "slice-profile.png")
    echo("\n".join(lines[4:]))
    echo(RESEARCH_USE_DISCLAIMER)


def calibrate_series(
    series: Annotated[
        list[Path],
        typer.Argument(help="Folders of labelled CT series (COVID-CT-MD layout), infected and clean."),
    ],
    lesions: Annotated[
        str, typer.Option("--lesions", help="CT lesion segmenter bundle (folder or bundled name).")
    ] = "lesions-ct-segmenter",
    write: Annotated[
        bool, typer.Option("--write", help="Store the threshold in the bundle folder given by --lesions.")
    ] = False,
    runtime: RuntimeOption = "onnx",
    device: Device = "auto",
) -> None:
    """Choose a lesion bundle's series threshold on labelled CT series: each slice's share of its lungs
    covered by lesions is cut where Youden's J over the pooled labelled slices is largest. Prints the
    threshold, the slice sensitivity and specificity it gives and each series' verdict; --write stores it
    in the bundle (bundle.json, atomically), and the screener then gives every series a verdict with it."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.errors import ChestlensInputError
    from chestlens.pipeline.series_calibration import calibrate_series as calibrate
    from chestlens.pipeline.series_calibration import store_series_threshold

    if write and not Path(lesions).is_dir():
        raise ChestlensInputError(
            Path(lesions), "--write needs a bundle folder, not a bundled name (copy it first)"
        )
    chosen = calibrate(lesions, series, runtime=runtime, device=device)
    typer.echo(
        f"{chosen.bundle}: series threshold {100 * chosen.threshold:.3g}% of the lungs, chosen on "
        f"{chosen.n_slices} slices of {chosen.n_series} series ({chosen.n_infected} infected); slice "
        f"sensitivity {chosen.slice_sensitivity:.3f}, specificity {chosen.slice_specificity:.3f}"
    )
    for folder, judged in zip(series, chosen.series, strict=True):
        typer.echo(
            f"  {folder.name}: {judged.n_infected} of {judged.n_slices} slices infected, lungs involved "
            f"{100 * judged.lung_fraction_total:.3f}%: {judged.verdict}"
        )
    if write:
        typer.echo(f"stored in {store_series_threshold(lesions, chosen)}")
    typer.echo(RESEARCH_USE_DISCLAIMER)
