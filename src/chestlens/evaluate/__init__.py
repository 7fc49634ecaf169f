"""Evaluation of classifiers from arrays: metrics with patient-bootstrap CIs, calibration, operating points,
per-source breakdown, figures and a self-contained report. Research use only, never a diagnosis.

Independent of how data are loaded: every function takes arrays (true classes, calibrated
probabilities, patient ids, sources). Typical flow::

    T = fit_temperature(val_logits, val_y)                       # validation only -> BundleSpec.temperature
    val_p = apply_temperature(val_logits, T)
    op = choose_threshold(val_y == covid, val_p[:, covid], 0.95)  # validation only
    spec.operating_points = [op.to_threshold("COVID-19")]
    rule = DecisionRule.from_operating_points(spec.operating_points)
    test_p = apply_temperature(test_logits, T)
    report = evaluate_classifier(test_y, test_p, labels, test_patients, test_sources,
                                 decision=rule, temperature=T)
    figures = save_figures(report, test_y, test_p, out_dir)
    write_report(report, figures, out_dir, title=..., model_info=..., data_info=...)
"""

from chestlens.evaluate.bootstrap import Estimate
from chestlens.evaluate.calibration import (
    ReliabilityBin,
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from chestlens.evaluate.classification import evaluate_classifier
from chestlens.evaluate.compare import AUCComparison, auc_with_ci, compare_auc, delong_test
from chestlens.evaluate.metrics import confusion_rates
from chestlens.evaluate.operating_point import (
    ClassThreshold,
    DecisionRule,
    OperatingPoint,
    choose_threshold,
    choose_threshold_for_specificity,
)
from chestlens.evaluate.plots import save_figures
from chestlens.evaluate.report import ReportDocument, write_report
from chestlens.evaluate.results import (
    CalibrationSummary,
    ClassificationReport,
    ClassMetrics,
    MetricSet,
    OperatingPointResult,
)

__all__ = [
    "AUCComparison",
    "CalibrationSummary",
    "ClassMetrics",
    "ClassThreshold",
    "ClassificationReport",
    "DecisionRule",
    "Estimate",
    "MetricSet",
    "OperatingPoint",
    "OperatingPointResult",
    "ReliabilityBin",
    "ReportDocument",
    "apply_temperature",
    "auc_with_ci",
    "brier_score",
    "choose_threshold",
    "choose_threshold_for_specificity",
    "compare_auc",
    "confusion_rates",
    "delong_test",
    "evaluate_classifier",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_bins",
    "save_figures",
    "write_report",
]
