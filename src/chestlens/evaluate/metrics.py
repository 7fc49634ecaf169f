"""Classification metrics: point estimates with scikit-learn, weighted vectorised forms for the bootstrap.

Per class ``c`` (one-vs-rest) from a confusion matrix ``cm`` (rows = true class, columns = predicted):
``TP = cm[c, c]``, ``FN = sum(cm[c, :]) - TP``, ``FP = sum(cm[:, c]) - TP``, ``TN = sum(cm) - TP - FN - FP``;

- sensitivity (recall) = TP / (TP + FN)
- specificity = TN / (TN + FP)
- precision / PPV = TP / (TP + FP)
- NPV = TN / (TN + FN)
- F1 = 2 TP / (2 TP + FP + FN)

A ratio with a zero denominator is undefined (NaN here, ``None`` with a reason in reports), never 0.

ROC-AUC of class ``c`` is one-vs-rest on the score ``probs[:, c]``: the probability that a random image
of class ``c`` scores higher than a random other image, ties counting one half (= the trapezoidal area
under the ROC curve, :func:`sklearn.metrics.roc_auc_score`). Average precision is
``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds in decreasing order
(:func:`sklearn.metrics.average_precision_score`, no interpolation). The weighted versions below give the
same numbers with integer image weights, i.e. on a resample in which an image appears ``w`` times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

RATES = ("sensitivity", "specificity", "ppv", "npv", "f1")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion_rates(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class one-vs-rest rates from confusion matrices ``cm`` of shape ``(..., C, C)``.

    Returns a dict over :data:`RATES` of arrays ``(..., C)``; NaN where a denominator is zero.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    fn = cm.sum(axis=-1) - tp
    fp = cm.sum(axis=-2) - tp
    tn = cm.sum(axis=(-2, -1))[..., None] - tp - fn - fp
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def binary_auc(y_true_binary: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC with scikit-learn; NaN when only one class is present."""
    y = np.asarray(y_true_binary).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, scores))


def binary_average_precision(y_true_binary: np.ndarray, scores: np.ndarray) -> float:
    """Average precision with scikit-learn; NaN when there is no positive."""
    y = np.asarray(y_true_binary).astype(bool)
    if not y.any():
        return float("nan")
    return float(average_precision_score(y, scores))


@dataclass(frozen=True, slots=True)
class TiedScores:
    """Scores sorted ascending and grouped by equal value, precomputed once for many resamples.

    Attributes:
        order: ``(N,)`` permutation sorting the scores ascending.
        starts: ``(G,)`` index (in sorted order) where each group of equal scores starts.
        positive: ``(N,)`` float 0/1 positive indicator, in sorted order.
    """

    order: np.ndarray
    starts: np.ndarray
    positive: np.ndarray

    @classmethod
    def build(cls, y_true_binary: np.ndarray, scores: np.ndarray) -> TiedScores:
        """Precompute for labels ``(N,)`` (0/1 or bool) and scores ``(N,)``."""
        scores = np.asarray(scores, dtype=np.float64)
        order = np.argsort(scores, kind="stable")
        ranked = scores[order]
        starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        positive = np.asarray(y_true_binary).astype(bool)[order].astype(np.float64)
        return cls(order=order, starts=starts, positive=positive)


def _group_weights(weights: np.ndarray, tied: TiedScores) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per tie group, ascending score: two arrays ``(B, G)``."""
    ordered = weights[:, tied.order]
    pos = np.add.reduceat(ordered * tied.positive, tied.starts, axis=1)
    neg = np.add.reduceat(ordered * (1.0 - tied.positive), tied.starts, axis=1)
    return pos, neg


def _ranked_pairs(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correctly ranked (positive, negative) pairs, ties counting one half, and all pairs: ``(B,)`` each."""
    below = np.cumsum(neg, axis=1) - neg
    return (pos * (below + 0.5 * neg)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1)


def weighted_pair_counts(weights: np.ndarray, tied: TiedScores) -> tuple[np.ndarray, np.ndarray]:
    """Weighted correctly ranked pairs and all (positive, negative) pairs under weights ``(B, N)``.

    Their ratio is the ROC-AUC; sums of both over disjoint strata give an AUC that counts only pairs
    inside a stratum (:mod:`chestlens.evaluate.within_source`). Two arrays ``(B,)``.
    """
    return _ranked_pairs(*_group_weights(weights, tied))


def weighted_auc_ap(weights: np.ndarray, tied: TiedScores) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision under image weights ``(B, N)``; returns two arrays ``(B,)``.

    Per row, with ``pos_g``/``neg_g`` the positive/negative weight of tie group ``g`` (ascending score):
    ``AUC = sum_g pos_g (neg_{<g} + neg_g / 2) / (sum pos * sum neg)``; and over groups in decreasing
    score, with cumulative ``TP_g``/``FP_g``: ``AP = sum_g pos_g * TP_g / (TP_g + FP_g) / sum pos``.
    AUC is NaN without positive or negative weight, AP without positive weight.
    """
    pos, neg = _group_weights(weights, tied)
    concordant, pairs = _ranked_pairs(pos, neg)
    auc = _ratio(concordant, pairs)
    n_pos = pos.sum(axis=1)
    pos_desc, neg_desc = pos[:, ::-1], neg[:, ::-1]
    tp, fp = np.cumsum(pos_desc, axis=1), np.cumsum(neg_desc, axis=1)
    precision = np.zeros_like(tp)
    np.divide(tp, tp + fp, out=precision, where=tp + fp > 0)
    ap = _ratio((pos_desc * precision).sum(axis=1), n_pos)
    return auc, ap
