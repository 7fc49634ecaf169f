"""The bootstrap resamples PATIENTS, is deterministic, and gives sensible percentile intervals."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from chestlens.evaluate import evaluate_classifier
from chestlens.evaluate.bootstrap import Estimate, estimate, estimate_text, patient_codes, resample_weights
from chestlens.evaluate.metrics import TiedScores, weighted_auc_ap


def test_resample_unit_is_the_patient():
    patients = np.array(["a", "a", "a", "b", "c", "c", "d"])
    codes, n_patients = patient_codes(patients)
    weights = np.concatenate(list(resample_weights(patients, 300, seed=3)))
    assert weights.shape == (300, patients.size)
    for code in range(n_patients):
        members = weights[:, codes == code]
        assert (members == members[:, :1]).all()  # a patient's images always come together
    per_patient = np.stack([weights[:, codes == code][:, 0] for code in range(n_patients)], axis=1)
    assert (per_patient.sum(axis=1) == n_patients).all()  # P patients drawn with replacement
    assert per_patient.mean() == pytest.approx(1.0, abs=0.1)


def test_resampled_statistic_equals_sklearn_on_the_drawn_patients():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(40), 3).astype(str)
    y = np.repeat(rng.integers(0, 2, 40), 3)
    scores = rng.random(y.size) + 0.5 * y
    weights = next(resample_weights(patients, 5, seed=1))
    auc, _ = weighted_auc_ap(weights, TiedScores.build(y, scores))
    for row, w in enumerate(weights):
        drawn = np.repeat(np.arange(y.size), w.astype(int))
        assert auc[row] == pytest.approx(roc_auc_score(y[drawn], scores[drawn]))


def test_duplicated_images_of_one_patient_count_as_one_unit():
    # 20 COVID-19 patients, one image each, 10 detected; patient 0 (detected) then gets 30 more images.
    y = np.zeros(50, dtype=int)
    detected = np.r_[np.ones(31, bool), np.ones(9, bool), np.zeros(10, bool)]
    probs = np.where(detected[:, None], [0.9, 0.1], [0.2, 0.8])
    by_patient = np.r_[np.zeros(31, int), np.arange(1, 20)].astype(str)
    by_image = np.arange(50).astype(str)
    labels = ["COVID-19", "normal"]
    widths = {}
    for name, ids in (("patient", by_patient), ("image", by_image)):
        e = evaluate_classifier(y, probs, labels, ids, n_boot=1000).overall.per_class[0].sensitivity
        assert e.value == pytest.approx(0.8)
        widths[name] = e.high - e.low
    # Image-level resampling treats the 31 copies as 31 independent cases and is far too confident.
    assert widths["patient"] > 2 * widths["image"]


def test_ci_contains_point_and_shrinks_with_more_patients(synthetic):
    widths = []
    for n_patients in (60, 600):
        p = synthetic(n_patients, seed=5)
        report = evaluate_classifier(p.y, p.probs, p.labels, p.patients, n_boot=300)
        overall = report.overall
        for e in (
            overall.accuracy,
            overall.macro_auc,
            overall.per_class[0].sensitivity,
            overall.per_class[1].auc,
        ):
            assert e.low <= e.value <= e.high
            assert e.n_valid + e.n_skipped == 300
        widths.append(overall.macro_auc.high - overall.macro_auc.low)
    assert widths[1] < 0.6 * widths[0]


def test_deterministic_with_a_seed(synthetic):
    p = synthetic(50)
    run = [
        evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, n_boot=100, seed=s)
        for s in (7, 7, 8)
    ]
    assert run[0].model_dump() == run[1].model_dump()
    assert run[0].overall.macro_auc != run[2].overall.macro_auc


def test_degenerate_resamples_are_skipped_and_counted():
    # Only 2 patients have class 1: in about (1 - 2/12)^12 = 11% of resamples neither is drawn.
    y = np.r_[np.zeros(10, int), np.ones(2, int)]
    probs = np.where(y[:, None] == 1, [0.3, 0.7], [0.6, 0.4])
    report = evaluate_classifier(y, probs, ["normal", "pneumonia"], np.arange(12).astype(str), n_boot=500)
    auc = report.overall.per_class[1].auc
    assert auc.value == 1.0 and auc.n_skipped > 0 and auc.n_valid + auc.n_skipped == 500
    assert any("Degenerate resamples" in w for w in report.warnings)


def test_estimate_without_enough_valid_samples_has_no_interval():
    assert estimate(0.5, np.array([np.nan, 0.4]), 0.95).low is None
    undefined = estimate(float("nan"), np.array([0.1, 0.2]), 0.95, "no image of class X")
    assert undefined.value is None and undefined.reason == "no image of class X"


def test_bootstrap_of_500_images_is_fast(synthetic):
    p = synthetic(250, seed=2)  # ~500 images
    start = time.perf_counter()
    evaluate_classifier(p.y, p.probs, p.labels, p.patients, n_boot=1000)
    assert time.perf_counter() - start < 10.0  # ~0.3 s on one core; generous for a shared CI machine


def test_one_estimate_text_for_estimates_their_dumps_triples_and_missing_metrics():
    e = Estimate(value=0.9124, low=0.87, high=0.95)
    undefined = Estimate(value=None, reason="no image of class X")
    assert estimate_text(e) == estimate_text(e.model_dump()) == estimate_text([0.9124, 0.87, 0.95])
    assert estimate_text(e) == "0.912 [0.870, 0.950]"
    assert estimate_text((0.5, None, None)) == "0.500"
    assert estimate_text(undefined) == estimate_text([None, None, None]) == estimate_text(None) == "n/a"
    assert estimate_text(undefined, reason=True) == "n/a (no image of class X)"
    assert estimate_text(undefined.model_dump(mode="json"), reason=True) == "n/a (no image of class X)"
