"""Temperature scaling, top-label ECE, reliability bins and the Brier score."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import brier_score_loss

from chestlens.evaluate import (
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)


def _sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class per row drawn from its probabilities: labels that are calibrated by construction."""
    return (probs.cumsum(axis=1) < rng.random((probs.shape[0], 1))).sum(axis=1).clip(max=probs.shape[1] - 1)


@pytest.mark.parametrize("true_temperature", [0.6, 2.5])
def test_fit_temperature_recovers_a_known_temperature(true_temperature):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(20000, 4))
    y = _sample(softmax(logits, axis=1), rng)
    fitted = fit_temperature(logits * true_temperature, y)  # mis-scaled logits; dividing by T undoes it
    assert fitted == pytest.approx(true_temperature, rel=0.05)


def test_apply_temperature_keeps_the_argmax():
    logits = np.random.default_rng(1).normal(size=(50, 3))
    probs = apply_temperature(logits, 3.0)
    assert probs.sum(axis=1) == pytest.approx(np.ones(50))
    assert (probs.argmax(axis=1) == logits.argmax(axis=1)).all()
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(logits, 0.0)


def test_ece_near_zero_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(3) * 0.7, size=20000)
    y = _sample(probs, rng)
    assert expected_calibration_error(y, probs) < 0.02
    sharpened = softmax(np.log(probs) * 3.0, axis=1)
    assert expected_calibration_error(y, sharpened) > 0.1


def test_ece_and_bins_on_a_hand_example():
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.35, 0.65]])
    y = np.array([0, 1, 1, 1])  # correct, wrong, correct, correct; one image in each of bins 9, 8, 7, 6
    assert expected_calibration_error(y, probs, n_bins=10) == pytest.approx((0.05 + 0.85 + 0.25 + 0.35) / 4)
    bins = reliability_bins(y, probs, n_bins=10)
    assert [b.count for b in bins] == [0] * 6 + [1, 1, 1, 1]
    assert bins[8].accuracy == 0.0 and bins[8].mean_confidence == pytest.approx(0.85)
    assert bins[0].accuracy is None


def test_bins_are_right_closed():
    bins = reliability_bins(np.array([0, 0]), np.array([[0.5, 0.5], [1.0, 0.0]]), n_bins=2)
    assert [b.count for b in bins] == [1, 1]  # 0.5 in (0, 0.5], 1.0 in (0.5, 1]


def test_brier_is_the_multiclass_sum():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1]])
    y = np.array([0, 1, 1])
    expected = ((probs - np.eye(3)[y]) ** 2).sum(axis=1).mean()
    assert brier_score(y, probs) == pytest.approx(expected)
    binary = np.array([[0.8, 0.2], [0.3, 0.7]])
    assert brier_score(np.array([0, 0]), binary) == pytest.approx(2 * brier_score_loss([0, 0], binary[:, 1]))
