"""The result schema of :func:`chestlens.evaluate.evaluate_classifier` (pydantic, JSON round-trips).

Undefined numbers are ``None`` (never NaN) so that ``report.json`` is strict JSON; an undefined
:class:`~chestlens.evaluate.bootstrap.Estimate` carries its reason.

The report leads with the within-source AUCs (:mod:`chestlens.evaluate.within_source`): pairs of images
from one source only, which telling hospitals apart cannot earn. The pooled metrics (``overall`` and the
AUCs in it) count every pair, including pairs whose two images come from different sources.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.evaluate.bootstrap import Estimate
from chestlens.evaluate.calibration import ReliabilityBin
from chestlens.evaluate.operating_point import DecisionRule
from chestlens.evaluate.within_source import WithinSourceAUC
from chestlens.strict import StrictModel

#: How every pooled AUC of a report is labelled: it counts pairs of images from different sources too.
POOLED_AUC_SCOPE = "includes between-source pairs"


class ClassMetrics(StrictModel):
    """One-vs-rest metrics of one class under the decision rule (AUC and AP use the probabilities)."""

    label: str
    n_images: int
    n_patients: int
    n_predicted: int
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    f1: Estimate
    auc: Estimate
    average_precision: Estimate


class OperatingPointResult(StrictModel):
    """A stored threshold applied to these data: binary ``p[label] >= threshold`` vs ``true == label``."""

    label: str
    threshold: float
    criterion: str
    validation_sensitivity: float | None
    validation_specificity: float | None
    n_flagged: int
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate


class CalibrationSummary(StrictModel):
    """Top-label calibration of the probabilities (see :mod:`chestlens.evaluate.calibration`)."""

    n_bins: int
    ece: Estimate
    mce: float | None
    brier: Estimate
    bins: list[ReliabilityBin]


class MetricSet(StrictModel):
    """All metrics on one set of images (everything, or one data source)."""

    n_images: int
    n_patients: int
    class_counts: dict[str, int]
    accuracy: Estimate
    balanced_accuracy: Estimate
    macro_auc: Estimate
    per_class: list[ClassMetrics]
    confusion_matrix: list[list[int]]
    confusion_matrix_normalized: list[list[float | None]]
    classification_report: dict[str, Any]
    calibration: CalibrationSummary
    operating_points: list[OperatingPointResult]


class BootstrapInfo(StrictModel):
    """How the confidence intervals were obtained."""

    n_boot: int
    seed: int
    ci: float
    unit: Literal["patient"] = "patient"
    method: Literal["percentile"] = "percentile"


class ClassificationReport(StrictModel):
    """Evaluation of a classifier: within-source AUCs first, then pooled (overall), per data source, and
    warnings. Research use only.

    Attributes:
        within_source: every binary question's AUC over same-source pairs (sources in
            :data:`~chestlens.evaluate.within_source.VIEW_STRATIFIED_SOURCES` split by view), with the
            per-source AUCs it pools and the sources left out; empty without source information.
        pooled_auc_scope: what the pooled AUCs of ``overall`` count (:data:`POOLED_AUC_SCOPE`).
    """

    disclaimer: str = RESEARCH_USE_DISCLAIMER
    within_source: list[WithinSourceAUC] = Field(default_factory=list)
    labels: list[str]
    pooled_auc_scope: str = POOLED_AUC_SCOPE
    decision: DecisionRule
    decision_description: str
    temperature: float | None = None
    bootstrap: BootstrapInfo
    overall: MetricSet
    per_source: dict[str, MetricSet] = Field(default_factory=dict)
    source_class_counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
