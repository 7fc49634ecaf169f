"""Metric values on hand-computed examples and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from chestlens.evaluate import confusion_rates, evaluate_classifier
from chestlens.evaluate.classification import classifier_statistic
from chestlens.evaluate.metrics import TiedScores, binary_auc, weighted_auc_ap


def test_rates_from_a_known_confusion_matrix():
    cm = np.array([[5, 1, 0], [2, 6, 2], [0, 1, 3]])  # 20 images; rows true, columns predicted
    rates = confusion_rates(cm)
    # class 0: TP 5, FN 1, FP 2, TN 12; class 1: TP 6, FN 4, FP 2, TN 8; class 2: TP 3, FN 1, FP 2, TN 14
    assert rates["sensitivity"] == pytest.approx([5 / 6, 6 / 10, 3 / 4])
    assert rates["specificity"] == pytest.approx([12 / 14, 8 / 10, 14 / 16])
    assert rates["ppv"] == pytest.approx([5 / 7, 6 / 8, 3 / 5])
    assert rates["npv"] == pytest.approx([12 / 13, 8 / 12, 14 / 15])
    assert rates["f1"] == pytest.approx([10 / 13, 12 / 18, 6 / 9])


def test_zero_denominator_is_undefined_not_zero():
    rates = confusion_rates(np.array([[3, 0], [0, 0]]))  # no image of class 1, none predicted as 1
    assert np.isnan(rates["sensitivity"][1]) and np.isnan(rates["ppv"][1]) and np.isnan(rates["f1"][1])
    assert rates["specificity"][1] == 1.0


def test_auc_perfect_random_and_undefined():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    assert binary_auc(y, y + 0.1 * rng.random(y.size)) == 1.0
    assert binary_auc(y, rng.random(y.size)) == pytest.approx(0.5, abs=0.03)
    assert np.isnan(binary_auc(np.ones(5), np.arange(5)))


def test_weighted_auc_ap_equal_sklearn_on_repeated_images():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.4 * y, 1)  # many ties
    weights = rng.integers(0, 4, (6, 300)).astype(float)
    auc, ap = weighted_auc_ap(weights, TiedScores.build(y, scores))
    for row, w in enumerate(weights):
        repeat = np.repeat(np.arange(y.size), w.astype(int))
        assert auc[row] == pytest.approx(roc_auc_score(y[repeat], scores[repeat]), abs=1e-12)
        assert ap[row] == pytest.approx(average_precision_score(y[repeat], scores[repeat]), abs=1e-12)


def test_report_matches_sklearn(predictions):
    p = predictions
    report = evaluate_classifier(p.y, p.probs, p.labels, p.patients, n_boot=0)
    pred = p.probs.argmax(axis=1)
    per_class = report.overall.per_class
    labels = [0, 1, 2]
    assert [m.sensitivity.value for m in per_class] == pytest.approx(recall_score(p.y, pred, average=None))
    assert [m.ppv.value for m in per_class] == pytest.approx(precision_score(p.y, pred, average=None))
    assert [m.f1.value for m in per_class] == pytest.approx(f1_score(p.y, pred, average=None))
    assert report.overall.balanced_accuracy.value == pytest.approx(balanced_accuracy_score(p.y, pred))
    macro = roc_auc_score(p.y, p.probs, multi_class="ovr", average="macro", labels=labels)
    assert report.overall.macro_auc.value == pytest.approx(macro)
    assert report.overall.classification_report["accuracy"] == pytest.approx(report.overall.accuracy.value)
    assert sum(map(sum, report.overall.confusion_matrix)) == p.y.size
    assert report.overall.confusion_matrix_normalized[0] == pytest.approx(
        np.array(report.overall.confusion_matrix[0]) / per_class[0].n_images
    )


def test_vectorised_statistic_with_unit_weights_gives_the_point_estimates(predictions):
    p = predictions
    report = evaluate_classifier(p.y, p.probs, p.labels, p.patients, n_boot=0)
    out = classifier_statistic(p.y, p.probs.argmax(axis=1), p.probs, [], 15)(np.ones((1, p.y.size)))
    overall = report.overall
    for name in ("accuracy", "balanced_accuracy", "macro_auc"):
        assert out[name][0] == pytest.approx(getattr(overall, name).value)
    assert out["ece"][0] == pytest.approx(overall.calibration.ece.value)
    assert out["brier"][0] == pytest.approx(overall.calibration.brier.value)
    for c, m in enumerate(overall.per_class):
        for name in ("sensitivity", "specificity", "ppv", "npv", "f1", "auc", "average_precision"):
            assert out[name][0, c] == pytest.approx(getattr(m, name).value)
