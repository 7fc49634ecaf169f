"""Evaluate a regional bundle (slice classifier over a lesion detector's regions) on labelled CT series.

Every COVID-CT-MD series with slice labels under a data root (:mod:`chestlens.data.ct_slices`) goes
through the bundle slice by slice; the slice probabilities of "infection present" are compared with the
slice labels per patient and pooled (:func:`chestlens.evaluate.ct_series.compare_slices`: AUC,
sensitivity, specificity at the bundle's operating point, block-bootstrap CIs). Patients the bundle was
trained on are named in the report's warnings: their figures are not held-out figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.atomic import write_text_atomic
from chestlens.data.ct_slices import labelled_slices
from chestlens.evaluate.ct_series import SeriesSliceReport, compare_slices, slice_report_markdown
from chestlens.evaluate.page import REPORT_JSON
from chestlens.models.bundle import Bundle
from chestlens.models.regional import RegionalSeriesReader
from chestlens.strict import StrictModel


class RegionalReport(StrictModel):
    """Slice predictions of a regional bundle against COVID-CT-MD slice labels. Research use only."""

    disclaimer: str = RESEARCH_USE_DISCLAIMER
    bundle: str
    threshold: float
    per_patient: dict[str, SeriesSliceReport]
    pooled: SeriesSliceReport
    warnings: list[str]


def evaluate_regional(
    bundle: Bundle, root: Path, out_dir: Path, *, n_boot: int = 1000, seed: int = 0
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Score ``bundle`` on every labelled COVID-CT-MD series under ``root``; writes ``report.json`` and
    ``report.md`` into ``out_dir`` and returns the headline numbers and the files."""
    spec = bundle.spec
    slices = labelled_slices(root)
    reader = RegionalSeriesReader(bundle)
    scores = reader.slice_probabilities(slices.pixels)
    positive, threshold = spec.labels[-1], reader.threshold
    rule = f"P({positive}) > {threshold:.3f} (the bundle's operating point)"

    def compare(name: str, where: np.ndarray) -> SeriesSliceReport:
        return compare_slices(
            name,
            scores[where],
            slices.infected[where],
            series_score=float(scores[where].max()),
            threshold=threshold,
            decision_rule=rule,
            n_boot=n_boot,
            seed=seed,
        )

    trained_on = set(spec.training.config.get("patients", []))
    report = RegionalReport(
        bundle=f"{spec.name} {spec.version}",
        threshold=threshold,
        per_patient={p: compare(p, slices.patient_of == p) for p in slices.patients},
        pooled=compare("all patients", np.ones(len(scores), bool)),
        warnings=[
            f"{p} was in this bundle's training data: its figures are not held-out figures"
            for p in slices.patients
            if p in trained_on or not trained_on
        ],
    )
    files = {"json": Path(out_dir) / REPORT_JSON, "md": Path(out_dir) / "report.md"}
    write_text_atomic(files["json"], report.model_dump_json(indent=2))
    lines = [f"# {report.bundle}: slices of {len(slices.patients)} patient(s)", ""]
    for part in [*report.per_patient.values(), report.pooled]:
        lines += [*slice_report_markdown(part), ""]
    lines += [f"- warning: {text}" for text in report.warnings]
    write_text_atomic(files["md"], "\n".join(lines) + "\n")
    return regional_summary(report), files


def regional_summary(report: RegionalReport) -> dict[str, Any]:
    """Headline numbers: per patient and pooled slice AUC, sensitivity and specificity."""

    def numbers(part: SeriesSliceReport) -> dict[str, Any]:
        return {
            "n_slices": part.n_slices,
            "auc": part.auc.model_dump(),
            "sensitivity": part.sensitivity.model_dump(),
            "specificity": part.specificity.model_dump(),
        }

    return {
        "n_images": report.pooled.n_slices,
        "per_patient": {p: numbers(part) for p, part in report.per_patient.items()},
        "pooled": numbers(report.pooled),
        "warnings": report.warnings,
    }
