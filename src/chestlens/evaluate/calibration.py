"""Calibration: temperature scaling, top-label expected calibration error, reliability diagram, Brier score.

Temperature scaling divides the logits by one scalar ``T > 0`` before the softmax. ``T`` is fitted on
VALIDATION logits only (minimum mean negative log-likelihood) and stored in the bundle
(``BundleSpec.temperature``); test probabilities are ``softmax(logits / T)`` with that stored ``T``.
``T > 1`` softens over-confident predictions; the argmax, hence accuracy, is unchanged.

Top-label ECE with ``n_bins`` equal-width bins: an image's confidence is its largest probability
``max_c p_c``, it is correct when that class (the argmax, whatever decision rule is used elsewhere) is
its true class. Bin ``k`` (``k = 0..n_bins-1``) holds confidences in ``(k / n_bins, (k + 1) / n_bins]``
(a confidence of exactly 0 goes to bin 0). With ``n`` images in all::

    ECE = sum_k (n_k / n) * |accuracy_k - mean_confidence_k|
    MCE = max over non-empty bins of |accuracy_k - mean_confidence_k|

ECE is biased upwards on small samples (the absolute value of bin noise); its bootstrap distribution is
shifted the same way, so the point estimate can sit near the low end of its percentile interval.

The Brier score is the multi-class one, ``mean_i sum_c (p_ic - [y_i = c])^2`` (range 0..2; for two classes
it is twice the usual binary Brier score).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import brier_score_loss

from chestlens.strict import StrictModel

DEFAULT_BINS = 15


class ReliabilityBin(StrictModel):
    """One bin of the reliability diagram: confidences in ``(lower, upper]``."""

    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


def apply_temperature(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Calibrated probabilities ``softmax(logits / T)``: ``(N, C)`` logits -> ``(N, C)`` probabilities."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def fit_temperature(
    val_logits: np.ndarray, val_y: np.ndarray, *, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """Fit the temperature on validation data: ``argmin_T mean_i -log softmax(z_i / T)[y_i]``.

    Bounded scalar minimisation (scipy, Brent) over ``log T`` in ``log(bounds)``.

    Args:
        val_logits: ``(N, C)`` uncalibrated logits of the VALIDATION split (never test).
        val_y: ``(N,)`` integer true classes in ``[0, C)``.
    """
    logits = np.asarray(val_logits, dtype=np.float64)
    y = np.asarray(val_y, dtype=np.int64)
    if logits.ndim != 2 or y.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise ValueError(f"need logits (N, C) and labels (N,), got {logits.shape} and {y.shape}")
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y].mean())

    result = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def top_label_bins(probs: np.ndarray, n_bins: int = DEFAULT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Confidence ``(N,)`` (largest probability) and its equal-width bin index ``(N,)`` in ``[0, n_bins)``."""
    confidence = np.asarray(probs, dtype=np.float64).max(axis=1)
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    return confidence, index


def weighted_calibration_error(
    weights: np.ndarray, confidence: np.ndarray, correct: np.ndarray, index: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-label ECE and MCE under image weights ``(B, N)``; returns two arrays ``(B,)``.

    ``confidence``, ``correct`` (0/1) and ``index`` (bin) are ``(N,)``; see the module docstring.
    """
    onehot = np.zeros((index.size, n_bins))
    onehot[np.arange(index.size), index] = 1.0
    count = weights @ onehot
    gap = weights @ (onehot * (np.asarray(correct, dtype=np.float64) - confidence)[:, None])
    total = count.sum(axis=1)
    ece = np.full(total.shape, np.nan)
    np.divide(np.abs(gap).sum(axis=1), total, out=ece, where=total > 0)
    per_bin = np.zeros_like(gap)
    np.divide(np.abs(gap), count, out=per_bin, where=count > 0)
    mce = np.where(total > 0, per_bin.max(axis=1), np.nan)
    return ece, mce


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """Top-label ECE with ``n_bins`` equal-width bins: ``(N,)`` labels, ``(N, C)`` probabilities."""
    confidence, index = top_label_bins(probs, n_bins)
    correct = np.asarray(probs).argmax(axis=1) == np.asarray(y)
    ece, _ = weighted_calibration_error(np.ones((1, index.size)), confidence, correct, index, n_bins)
    return float(ece[0])


def reliability_bins(y: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS) -> list[ReliabilityBin]:
    """Reliability-diagram data: per bin the count, mean confidence and accuracy (``None`` when empty)."""
    confidence, index = top_label_bins(probs, n_bins)
    correct = np.asarray(probs).argmax(axis=1) == np.asarray(y)
    bins = []
    for k in range(n_bins):
        members = index == k
        count = int(members.sum())
        bins.append(
            ReliabilityBin(
                lower=k / n_bins,
                upper=(k + 1) / n_bins,
                count=count,
                mean_confidence=float(confidence[members].mean()) if count else None,
                accuracy=float(correct[members].mean()) if count else None,
            )
        )
    return bins


def brier_score(y: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score ``mean_i sum_c (p_ic - [y_i = c])^2`` (scikit-learn, not halved)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = list(range(probs.shape[1]))
    return float(brier_score_loss(np.asarray(y), probs, labels=labels, scale_by_half=False))
