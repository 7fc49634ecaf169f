"""A CT series screened slice by slice, compared with the series' own slice labels.

Input: the pipeline's per-slice lesion scores of one series
(:attr:`chestlens.pipeline.schema.LesionSummary.slice_scores`, in the volume's ascending-z order) and the
reference slice labels in the same order (e.g. COVID-CT-MD's, :func:`chestlens.data.sources.covid_ct_md.
slice_labels`). Nothing is tuned on these labels: the slice decision is the pipeline's own rule (a lesion
region of at least :data:`~chestlens.pipeline.measure.MIN_LESION_PIXELS` network pixels inside the lungs,
i.e. score > 0), and the AUC needs no threshold.

The series verdict's threshold (a lesion bundle's ``series_threshold``) is chosen on labelled slices by
:func:`involvement_threshold`: the cut of the slices' lung involvement with the largest Youden's J over
all the labelled slices given (``chestlens calibrate-series``: :mod:`chestlens.pipeline.series_calibration`).

Confidence intervals: neighbouring slices of one patient are strongly correlated, so resampling single
slices would give intervals that are far too narrow. The bootstrap draws whole blocks of
:data:`BLOCK_SLICES` consecutive slices (a non-overlapping block bootstrap, through the same machinery as
the patient bootstrap: each block plays a patient). With one series the intervals describe slice-level
variation within that patient only, never across patients.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.bootstrap import Estimate, bootstrap, estimate
from chestlens.evaluate.metrics import TiedScores, binary_auc, weighted_auc_ap
from chestlens.rendering import render
from chestlens.strict import StrictModel

#: Consecutive slices resampled together by the block bootstrap.
BLOCK_SLICES = 10
_RATES = ("sensitivity", "specificity", "ppv", "npv")
SEGMENTER_RULE = "positive when the segmenter finds a lesion region inside the lungs (slice score > 0)"


class SeriesSliceReport(StrictModel):
    """Slice predictions of one series against its slice labels. Research use only."""

    disclaimer: str = RESEARCH_USE_DISCLAIMER
    series: str
    n_slices: int
    n_labelled_positive: int
    n_predicted_positive: int
    decision_rule: str
    block_slices: int
    n_boot: int
    auc: Estimate
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    confusion: dict[str, int]  # tn, fp, fn, tp slices
    series_score: float
    series_verdict: str | None = None
    series_threshold: float | None = None
    lung_fraction_total: float | None
    volume_ml_by_label: dict[str, float]
    lung_fraction_by_label: dict[str, float]


def _rates(weights: np.ndarray, truth: np.ndarray, decided: np.ndarray) -> dict[str, np.ndarray]:
    tp = (weights * (truth & decided)).sum(axis=1)
    fp = (weights * (~truth & decided)).sum(axis=1)
    fn = (weights * (truth & ~decided)).sum(axis=1)
    tn = (weights * (~truth & ~decided)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
        }


def compare_slices(
    series: str,
    slice_scores: Sequence[float],
    labels: Sequence[bool],
    *,
    series_score: float,
    series_verdict: str | None = None,
    series_threshold: float | None = None,
    lung_fraction_total: float | None = None,
    volume_ml_by_label: dict[str, float] | None = None,
    lung_fraction_by_label: dict[str, float] | None = None,
    threshold: float = 0.0,
    decision_rule: str = SEGMENTER_RULE,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> SeriesSliceReport:
    """Slice-level AUC, sensitivity, specificity, PPV and NPV of one series (module docstring).

    Args:
        series: a name for the report (a folder name; never a DICOM patient name or id).
        slice_scores: ``(slices,)`` lesion scores, 0 where the pipeline found no lesion region.
        labels: ``(slices,)`` reference labels (True: the slice shows infection), same order.
        series_score, series_verdict, series_threshold, lung_fraction_total, volume_ml_by_label,
            lung_fraction_by_label: the pipeline's series-level numbers, copied into the report.
        threshold, decision_rule: a slice is decided positive when its score is above ``threshold``
            (fixed in advance or chosen on other data, never on these labels), described in words.

    Raises:
        ChestlensInputError: lengths differ or there are no slices.
    """
    scores = np.asarray(slice_scores, dtype=np.float64)
    truth = np.asarray(labels, dtype=bool)
    if not scores.size or scores.shape != truth.shape:
        raise ChestlensInputError(
            None, f"{scores.size} slice scores do not match {truth.size} slice labels for series {series}"
        )
    decided = scores > threshold
    blocks = np.arange(scores.size) // BLOCK_SLICES
    tied = TiedScores.build(truth, scores)

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        auc, _ = weighted_auc_ap(weights, tied)
        return {"auc": auc, **_rates(weights, truth, decided)}

    samples = bootstrap(statistic, blocks, n_boot, seed) if n_boot else {}
    point = _rates(np.ones((1, scores.size)), truth, decided)
    return SeriesSliceReport(
        series=series,
        n_slices=int(scores.size),
        n_labelled_positive=int(truth.sum()),
        n_predicted_positive=int(decided.sum()),
        decision_rule=decision_rule,
        block_slices=BLOCK_SLICES,
        n_boot=n_boot,
        auc=estimate(binary_auc(truth, scores), samples.get("auc"), ci, "needs positive and negative slices"),
        **{name: estimate(float(point[name][0]), samples.get(name), ci) for name in _RATES},
        confusion={
            "tn": int((~truth & ~decided).sum()),
            "fp": int((~truth & decided).sum()),
            "fn": int((truth & ~decided).sum()),
            "tp": int((truth & decided).sum()),
        },
        series_score=float(series_score),
        series_verdict=series_verdict,
        series_threshold=series_threshold,
        lung_fraction_total=lung_fraction_total,
        volume_ml_by_label=dict(volume_ml_by_label or {}),
        lung_fraction_by_label=dict(lung_fraction_by_label or {}),
    )


def involvement_threshold(fractions: Sequence[float], labels: Sequence[bool]) -> float:
    """The share of the lungs from which a CT series is "lesions found", chosen on labelled slices.

    Each slice is decided positive when its lesions cover at least ``c`` of its lungs; ``c`` runs over
    the distinct non-zero shares of the slices, and the one with the largest Youden's J (sensitivity +
    specificity - 1, ties to the larger share) is returned rounded to two significant digits.

    Args:
        fractions: ``(slices,)`` each slice's share of its lungs covered by lesions
            (:attr:`chestlens.pipeline.schema.LesionSummary.slice_lung_fractions`), several series pooled.
        labels: ``(slices,)`` reference labels in the same order (True: the slice shows infection).

    Raises:
        ChestlensInputError: lengths differ, or the labels lack infected or clean slices, or no slice
            has lesions.
    """
    shares = np.asarray(fractions, dtype=np.float64)
    truth = np.asarray(labels, dtype=bool)
    if shares.shape != truth.shape or not truth.any() or truth.all():
        raise ChestlensInputError(
            None,
            f"need infected and clean labelled slices, one share each: got {shares.size} shares, "
            f"{truth.size} labels ({int(truth.sum())} infected)",
        )
    cuts = np.unique(shares[shares > 0])
    if not cuts.size:
        raise ChestlensInputError(None, "no slice has lesions: no threshold can be chosen")
    decided = shares[None, :] >= cuts[:, None]
    j = decided[:, truth].mean(axis=1) + (~decided[:, ~truth]).mean(axis=1) - 1.0
    best = float(cuts[np.flatnonzero(j == j.max())[-1]])
    return float(f"{best:.2g}")


def slice_report_markdown(report: SeriesSliceReport) -> list[str]:
    """Markdown lines of a slice comparison (template ``slice_report.md``)."""
    return render("slice_report.md", report=report).split("\n")
