"""evaluate_classifier: per-source breakdown, undefined metrics, warnings, JSON and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.evaluate import ClassificationReport, evaluate_classifier


def _confounded(synthetic):
    """Source "covid-hospital" holds every COVID-19 image and nothing else."""
    p = synthetic(150, seed=3, sources=("x", "y"))
    p.sources = np.where(p.y == 0, "covid-hospital", p.sources)
    return p


def test_per_source_breakdown_handles_absent_classes(synthetic):
    p = _confounded(synthetic)
    report = evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, n_boot=100)
    assert set(report.per_source) == {"covid-hospital", "x", "y"}
    assert sum(m.n_images for m in report.per_source.values()) == report.overall.n_images
    covid_only = report.per_source["covid-hospital"]
    assert covid_only.class_counts == {"COVID-19": int((p.y == 0).sum()), "pneumonia": 0, "normal": 0}
    assert covid_only.per_class[0].auc.value is None
    assert covid_only.per_class[0].auc.reason == "every image is of class COVID-19"
    assert covid_only.per_class[1].sensitivity.reason == "no image of class pneumonia"
    assert covid_only.macro_auc.value is None and "AUC undefined" in covid_only.macro_auc.reason
    x = report.per_source["x"]
    assert x.per_class[0].n_images == 0 and x.per_class[0].auc.value is None
    assert x.per_class[1].auc.value is not None and x.per_class[1].auc.low is not None
    in_x = p.sources == "x"
    assert x.accuracy.value == pytest.approx((p.probs[in_x].argmax(axis=1) == p.y[in_x]).mean())
    assert report.source_class_counts["x"]["COVID-19"] == 0


def test_warnings_for_source_confounding(synthetic):
    p = _confounded(synthetic)
    warnings = evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, n_boot=50).warnings
    assert any(w.startswith("Class COVID-19 comes from a single source (covid-hospital)") for w in warnings)
    assert any(w.startswith("Source covid-hospital contains only class COVID-19") for w in warnings)
    assert not any("Class pneumonia comes from a single source" in w for w in warnings)


def test_no_source_warning_when_sources_are_mixed_or_absent(synthetic):
    p = synthetic(150, seed=4)
    assert not any(
        "source" in w
        for w in evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, n_boot=50).warnings
    )
    assert evaluate_classifier(p.y, p.probs, p.labels, p.patients, None, n_boot=10).per_source == {}


def test_warnings_for_small_classes_and_few_patients():
    y = np.r_[np.zeros(40, int), np.ones(5, int)]
    probs = np.where(y[:, None] == 1, [0.2, 0.8], [0.7, 0.3])
    patients = np.r_[np.arange(20).repeat(2), np.full(5, 99)].astype(str)
    warnings = evaluate_classifier(y, probs, ["normal", "pneumonia"], patients, n_boot=50).warnings
    assert any("Class pneumonia has only 5 images" in w for w in warnings)
    assert any("Class pneumonia comes from only 1 patients" in w for w in warnings)
    assert any(w.startswith("Only 21 patients") for w in warnings)


def test_absent_class_overall():
    y = np.array([0, 1, 0, 1] * 10)
    probs = np.tile([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]], (20, 1))
    report = evaluate_classifier(y, probs, ["a", "b", "c"], np.arange(40).astype(str), n_boot=20)
    assert report.overall.per_class[2].sensitivity.value is None
    assert report.overall.macro_auc.value is None
    assert report.overall.balanced_accuracy.value == 1.0  # over the classes present
    assert report.overall.confusion_matrix_normalized[2] == [None, None, None]
    assert any("Class c has no image" in w for w in report.warnings)


def test_json_round_trip_and_disclaimer(synthetic):
    p = _confounded(synthetic)
    report = evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, n_boot=30, temperature=1.7)
    text = report.model_dump_json()
    assert "NaN" not in text and "Infinity" not in text
    again = ClassificationReport.model_validate_json(text)
    assert again == report
    assert again.disclaimer == RESEARCH_USE_DISCLAIMER and again.temperature == 1.7
    assert again.bootstrap.unit == "patient"


def test_without_bootstrap_there_is_no_interval(predictions):
    p = predictions
    e = evaluate_classifier(p.y, p.probs, p.labels, p.patients, n_boot=0).overall.macro_auc
    assert e.value is not None and e.low is None and e.high is None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"probs": np.ones((4, 2))}, "probabilities"),
        ({"y_true": np.array([0, 1, 2, 0])}, "integers in"),
        ({"y_true": np.array([0.0, 1.0, 1.0, 0.0])}, "integers in"),
        ({"patient_ids": np.array(["a", "b"])}, "patient_ids"),
        ({"labels": ["only"]}, "C = len"),
        ({"sources": np.array(["s"])}, "sources"),
    ],
)
def test_input_errors(change, match):
    args = {
        "y_true": np.array([0, 1, 1, 0]),
        "probs": np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.9, 0.1]]),
        "labels": ["normal", "pneumonia"],
        "patient_ids": np.array(["a", "b", "c", "d"]),
        "sources": None,
    } | change
    with pytest.raises(ValueError, match=match):
        evaluate_classifier(**args)
