"""Binary AUC with a patient-bootstrap CI, and two models compared on the same images.

:func:`compare_auc` is the primary comparison: a PAIRED bootstrap over patients (each resample draws
patients with replacement and evaluates both models on the same resampled images), giving a percentile
CI of ``AUC_b - AUC_a``. The DeLong test (DeLong et al. 1988, with the midrank placements of Sun & Xu
2014) is reported alongside; it treats images as independent, so with several images per patient its
p-value is too small, and the bootstrap CI is the one to quote.

Typical uses: a model's pneumonia-vs-normal AUC within one source (:func:`auc_with_ci` on the images of
that source whose true class is pneumonia or normal, score ``p_pneumonia``); model A vs model B on the
same test images (:func:`compare_auc`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata

from chestlens.evaluate.bootstrap import Estimate, bootstrap, estimate
from chestlens.evaluate.metrics import TiedScores, binary_auc, weighted_auc_ap
from chestlens.strict import StrictModel


class AUCComparison(StrictModel):
    """``AUC_b - AUC_a`` on the same images: paired patient-bootstrap CI and the DeLong test."""

    auc_a: Estimate
    auc_b: Estimate
    difference: Estimate
    delong_z: float
    delong_p: float
    n_images: int
    n_patients: int


def _binary_inputs(
    y_true_binary: np.ndarray, *scores: np.ndarray, patient_ids: np.ndarray | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    y = np.asarray(y_true_binary).astype(bool).reshape(-1)
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
    if patient_ids is not None:
        arrays.append(np.asarray(patient_ids).reshape(-1))
    if any(a.shape != y.shape for a in arrays):
        raise ValueError(
            f"labels {y.shape}, scores and patient ids {[a.shape for a in arrays]} differ in length"
        )
    if y.all() or not y.any():
        raise ValueError("AUC needs both positive and negative images")
    return y, arrays


def auc_with_ci(
    y_true_binary: np.ndarray,
    scores: np.ndarray,
    patient_ids: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> Estimate:
    """ROC-AUC ``(N,)`` labels/scores with a percentile CI from a bootstrap over patients."""
    y, (s, _) = _binary_inputs(y_true_binary, scores, patient_ids=patient_ids)
    tied = TiedScores.build(y, s)
    boot = bootstrap(lambda w: {"auc": weighted_auc_ap(w, tied)[0]}, patient_ids, n_boot, seed)
    return estimate(binary_auc(y, s), boot.get("auc"), ci)


def delong_test(y_true_binary: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[float, float]:
    """DeLong test of ``AUC_b - AUC_a`` for correlated ROC curves; returns ``(z, two-sided p)``.

    Placements with midranks: for positives ``V10 = (rank among all - rank among positives) / n_neg``,
    for negatives ``V01 = 1 - (rank among all - rank among negatives) / n_pos``;
    ``Var(diff) = c' S10 c / n_pos + c' S01 c / n_neg`` with ``c = (-1, 1)`` and ``S`` the 2x2 sample
    covariances of the placements. ``z`` is 0 (p = 1) when the variance is 0.
    """
    y, arrays = _binary_inputs(y_true_binary, scores_a, scores_b)
    pos, neg = y, ~y
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    v10, v01, auc = [], [], []
    for s in arrays:
        ranks = rankdata(s)
        rank_pos, rank_neg = rankdata(s[pos]), rankdata(s[neg])
        v10.append((ranks[pos] - rank_pos) / n_neg)
        v01.append(1.0 - (ranks[neg] - rank_neg) / n_pos)
        auc.append(v10[-1].mean())
    contrast = np.array([-1.0, 1.0])
    s10 = np.atleast_2d(np.cov(np.stack(v10))) if n_pos > 1 else np.zeros((2, 2))
    s01 = np.atleast_2d(np.cov(np.stack(v01))) if n_neg > 1 else np.zeros((2, 2))
    variance = contrast @ s10 @ contrast / n_pos + contrast @ s01 @ contrast / n_neg
    if variance <= 0:
        return 0.0, 1.0
    z = (auc[1] - auc[0]) / np.sqrt(variance)
    return float(z), float(2.0 * norm.sf(abs(z)))


def compare_auc(
    y_true_binary: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    patient_ids: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> AUCComparison:
    """Compare two models' ROC-AUCs on the same images ``(N,)``: paired bootstrap over patients + DeLong.

    Both models are evaluated on every resample (same patients), so the CI of the difference accounts
    for their correlation; resamples without positives or negatives are skipped and counted.
    """
    y, (a, b, _) = _binary_inputs(y_true_binary, scores_a, scores_b, patient_ids=patient_ids)
    tied_a, tied_b = TiedScores.build(y, a), TiedScores.build(y, b)

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        auc_a, auc_b = weighted_auc_ap(weights, tied_a)[0], weighted_auc_ap(weights, tied_b)[0]
        return {"a": auc_a, "b": auc_b, "diff": auc_b - auc_a}

    boot = bootstrap(statistic, patient_ids, n_boot, seed)
    point_a, point_b = binary_auc(y, a), binary_auc(y, b)
    z, p = delong_test(y, a, b)
    return AUCComparison(
        auc_a=estimate(point_a, boot.get("a"), ci),
        auc_b=estimate(point_b, boot.get("b"), ci),
        difference=estimate(point_b - point_a, boot.get("diff"), ci),
        delong_z=z,
        delong_p=p,
        n_images=int(y.size),
        n_patients=len(np.unique(np.asarray(patient_ids).astype(str))),
    )
