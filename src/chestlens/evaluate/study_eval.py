"""Evaluate a study bundle (CT series classified from lesion features) on labelled CT series, and render
its model card.

The series are screened by the pipeline (a higher layer), which hands this module one
:class:`StudySeries` per series (patient, true class, lesion features); ``chestlens evaluate`` passes
the screening function in (:class:`chestlens.evaluate.kinds.EvaluationRequest`). Predictions come from
the same numpy path as screening (:class:`chestlens.models.study.StudyRunner`). The report gives the
per-series predictions, the accuracy and the confusion matrix, and names every series of a patient the
bundle was trained on: those are not held-out predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.atomic import write_text_atomic
from chestlens.evaluate.page import REPORT_JSON
from chestlens.models.spec import BundleSpec
from chestlens.models.study import StudyRunner
from chestlens.rendering import render
from chestlens.strict import StrictModel

#: The sentence every study card carries (issue 17).
THREE_PATIENTS = "Three patients prove the path, not the accuracy."


class StudySeries(StrictModel):
    """One labelled CT series as the study classifier sees it."""

    patient: str
    series: str  # the series folder
    label: str  # the true class (the ct3 task's label)
    features: dict[str, float]  # lesions.features of the screening result (booleans as 0/1)
    lesion_model: str = ""  # name and version of the lesion segmenter that measured them


#: ``(data root, lesion bundle, regional bundle folder or None) -> the labelled CT series under root``,
#: screened (the pipeline's :func:`chestlens.pipeline.study_data.screen_study_series`).
SeriesFeatures = Callable[[Path, str, Path | None], list[StudySeries]]


class StudyPrediction(StrictModel):
    patient: str
    series: str
    truth: str
    predicted: str
    probabilities: dict[str, float]
    trained_on: bool  # the bundle saw this patient: not a held-out prediction


class StudyReport(StrictModel):
    """A study bundle's predictions on labelled CT series. Research use only."""

    disclaimer: str = RESEARCH_USE_DISCLAIMER
    bundle: str
    labels: list[str]
    predictions: list[StudyPrediction]
    n_series: int
    accuracy: float | None
    confusion: list[list[int]]  # rows: true class, columns: predicted class (order of labels)
    warnings: list[str] = Field(default_factory=list)


def confusion_matrix(
    labels: Sequence[str], truth: Sequence[str], predicted: Sequence[str]
) -> list[list[int]]:
    """Counts of (true, predicted) label pairs; rows and columns in the order of ``labels``."""
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, predicted, strict=True):
        matrix[labels.index(t)][labels.index(p)] += 1
    return matrix


def trained_patients(spec: BundleSpec) -> set[str]:
    """The patients a study bundle was fitted on (``training.config["patients"]`` as resolved)."""
    return set(spec.training.config.get("patients_used") or spec.training.config.get("patients") or [])


def study_report(runner: StudyRunner, series: Sequence[StudySeries]) -> StudyReport:
    """Predict every series with ``runner`` and compare with its label."""
    spec = runner.spec
    seen = trained_patients(spec)
    predictions = []
    for item in series:
        values = np.asarray([item.features[name] for name in runner.features])
        probabilities = runner.probabilities(values)
        predictions.append(
            StudyPrediction(
                patient=item.patient,
                series=item.series,
                truth=item.label,
                predicted=spec.labels[int(np.argmax(probabilities))],
                probabilities={
                    k: round(float(p), 4) for k, p in zip(spec.labels, probabilities, strict=True)
                },
                trained_on=item.patient in seen,
            )
        )
    truth = [p.truth for p in predictions]
    unknown = sorted(set(truth) - set(spec.labels))
    warnings = [f"series labelled {', '.join(unknown)}: not a class of this bundle"] if unknown else []
    scored = [p for p in predictions if p.truth in spec.labels]
    warnings += [
        f"{p.patient} was in this bundle's training data: its prediction is not a held-out prediction"
        for p in predictions
        if p.trained_on
    ]
    correct = sum(p.truth == p.predicted for p in scored)
    return StudyReport(
        bundle=f"{spec.name} {spec.version}",
        labels=list(spec.labels),
        predictions=predictions,
        n_series=len(predictions),
        accuracy=correct / len(scored) if scored else None,
        confusion=confusion_matrix(spec.labels, [p.truth for p in scored], [p.predicted for p in scored]),
        warnings=warnings,
    )


def confusion_lines(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> list[str]:
    """A Markdown confusion matrix (rows true, columns predicted)."""
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for label, row in zip(labels, matrix, strict=True):
        lines.append(f"| {label} | " + " | ".join(str(n) for n in row) + " |")
    return lines


def study_report_markdown(report: StudyReport) -> list[str]:
    lines = [f"# {report.bundle}: {report.n_series} CT series", "", f"> **{report.disclaimer}**", ""]
    lines += ["| patient | true | predicted | " + " | ".join(f"P({k})" for k in report.labels) + " |"]
    lines += ["|---" * (3 + len(report.labels)) + "|"]
    for p in report.predictions:
        cells = " | ".join(f"{p.probabilities[k]:.3f}" for k in report.labels)
        mark = " (training patient)" if p.trained_on else ""
        lines.append(f"| {p.patient}{mark} | {p.truth} | {p.predicted} | {cells} |")
    accuracy = "n/a" if report.accuracy is None else f"{report.accuracy:.3f}"
    lines += [
        "",
        f"Accuracy: {accuracy} over {report.n_series} series.",
        "",
        *confusion_lines(report.labels, report.confusion),
    ]
    lines += ["", *[f"- warning: {w}" for w in report.warnings]]
    return lines


def evaluate_study(
    bundle_path: Path, series: Sequence[StudySeries], out_dir: Path
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Score the study bundle at ``bundle_path`` on ``series``; writes ``report.json`` and ``report.md``
    into ``out_dir`` and returns the headline numbers and the files."""
    report = study_report(StudyRunner.load(bundle_path), series)
    files = {"json": Path(out_dir) / REPORT_JSON, "md": Path(out_dir) / "report.md"}
    write_text_atomic(files["json"], report.model_dump_json(indent=2))
    write_text_atomic(files["md"], "\n".join(study_report_markdown(report)) + "\n")
    return study_summary(report), files


def study_summary(report: StudyReport) -> dict[str, Any]:
    return {
        "n_images": report.n_series,
        "labels": report.labels,
        "accuracy": report.accuracy,
        "confusion": report.confusion,
        "predictions": [p.model_dump() for p in report.predictions],
        "warnings": report.warnings,
    }


def study_lines(summary: dict[str, Any]) -> list[str]:
    """What ``chestlens evaluate`` prints for a study bundle."""
    labels = summary["labels"]
    lines = [f"{summary['n_images']} CT series"]
    for p in summary["predictions"]:
        probabilities = ", ".join(f"{k} {p['probabilities'][k]:.3f}" for k in labels)
        lines.append(f"  {p['patient']}: true {p['truth']}, predicted {p['predicted']} ({probabilities})")
    accuracy = summary["accuracy"]
    lines.append(f"accuracy: {'n/a' if accuracy is None else f'{accuracy:.3f}'}")
    lines.append("confusion (rows true, columns predicted: " + ", ".join(labels) + "):")
    lines += [f"  {label}: {row}" for label, row in zip(labels, summary["confusion"], strict=True)]
    return lines


def render_study_card(
    spec: BundleSpec, *, confounders: Sequence[str] = (), reproduce: str | None = None
) -> str:
    """Markdown model card of a study bundle, from what its training stored in the bundle
    (``metrics.lopo``: the leave-one-patient-out table; ``metrics.series``: the training series' features)."""
    lopo = spec.metrics.get("lopo") or {}
    return render(
        "study_card.md",
        spec=spec,
        training=spec.training,
        features=list(spec.architecture_kwargs.get("features") or []),
        lesion_bundle=spec.architecture_kwargs.get("lesion_bundle") or {},
        regional_bundle=spec.architecture_kwargs.get("regional_bundle") or {},
        lopo=lopo,
        series=spec.metrics.get("series") or [],
        confusion=confusion_lines(
            spec.labels, lopo.get("confusion") or [[0] * len(spec.labels)] * len(spec.labels)
        ),
        three_patients=THREE_PATIENTS,
        limits=list(confounders),
        reproduce=reproduce,
    )
