"""Binary AUC with a patient CI, and two models' AUCs compared on the same images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from chestlens.evaluate import auc_with_ci, compare_auc, delong_test


def _two_models(n_patients: int = 150, seed: int = 0):
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), 2).astype(str)
    y = np.repeat(rng.random(n_patients) < 0.4, 2)
    signal = y + rng.normal(scale=0.3, size=y.size)  # shared by both models: they are correlated
    return (
        y,
        signal + rng.normal(scale=1.2, size=y.size),
        signal + rng.normal(scale=0.3, size=y.size),
        patients,
    )


def _delong_brute_force(y, a, b):
    """DeLong from its definition: placements averaged over all positive/negative pairs."""
    v10, v01, aucs = [], [], []
    for s in (a, b):
        psi = (s[y][:, None] > s[~y][None, :]) + 0.5 * (s[y][:, None] == s[~y][None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    contrast = np.array([-1, 1])
    var = contrast @ np.cov(v10) @ contrast / y.sum() + contrast @ np.cov(v01) @ contrast / (~y).sum()
    z = (aucs[1] - aucs[0]) / np.sqrt(var)
    return z, 2 * norm.sf(abs(z))


def test_delong_matches_its_definition_with_ties():
    y, a, b, _ = _two_models()
    a, b = np.round(a, 1), np.round(b, 1)
    assert delong_test(y, a, b) == pytest.approx(_delong_brute_force(y, a, b))


def test_better_model_wins_with_a_paired_ci():
    y, a, b, patients = _two_models()
    result = compare_auc(y, a, b, patients, n_boot=500)
    assert result.auc_b.value > result.auc_a.value
    assert result.difference.value == pytest.approx(result.auc_b.value - result.auc_a.value)
    assert 0 < result.difference.low <= result.difference.value <= result.difference.high
    assert result.delong_p < 0.05 and result.n_patients == 150 and result.n_images == 300


def test_identical_models_differ_by_zero():
    y, a, _, patients = _two_models()
    result = compare_auc(y, a, a, patients, n_boot=100)
    assert result.difference.value == 0 and result.difference.low == 0 and result.difference.high == 0
    assert (result.delong_z, result.delong_p) == (0.0, 1.0)


def test_auc_with_ci_within_a_subset():
    y, _, b, patients = _two_models()
    e = auc_with_ci(y, b, patients, n_boot=300, seed=1)
    assert e.low <= e.value <= e.high and e.n_valid == 300
    with pytest.raises(ValueError, match="both positive and negative"):
        auc_with_ci(np.ones(4), np.arange(4), np.arange(4))
    with pytest.raises(ValueError, match="differ in length"):
        auc_with_ci(y, b, patients[:-1])
