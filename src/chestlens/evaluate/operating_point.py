"""Operating points and decision rules on calibrated probabilities.

A threshold is chosen on VALIDATION data (:func:`choose_threshold`: the highest threshold whose
sensitivity reaches the target, by default 0.95 for COVID-19), stored in the bundle
(:meth:`OperatingPoint.to_threshold` -> ``BundleSpec.operating_points``) and applied unchanged at test
through a :class:`DecisionRule`.

Decision rule (exact). With ``thresholds = [(c_1, t_1), ..., (c_m, t_m)]`` (in priority order), an image
with calibrated probabilities ``p`` is assigned:

1. the first ``c_j`` in the list with ``p[c_j] >= t_j``;
2. otherwise the most probable class among the classes that have no threshold (all classes when every
   class has one), ties going to the lower class index.

With no threshold the rule is plain argmax. With one threshold (the usual case), e.g. COVID-19 at
``t``: "COVID-19 if p(COVID-19) >= t, else the most probable of the other classes".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import Field
from sklearn.metrics import roc_curve

from chestlens.models.spec import ClassThreshold
from chestlens.strict import StrictModel

DEFAULT_TARGET_SENSITIVITY = 0.95
_EPS = 1e-12


class OperatingPoint(StrictModel):
    """A threshold on one class's score with its sensitivity and specificity on the data it was chosen on.

    The rule is "positive if ``score >= threshold``".
    """

    threshold: float
    sensitivity: float
    specificity: float
    criterion: str
    n_positive: int
    n_negative: int

    def to_threshold(self, label: str) -> ClassThreshold:
        """This point for class ``label``: an entry of a :class:`DecisionRule` and of ``BundleSpec``."""
        return ClassThreshold(
            label=label,
            threshold=self.threshold,
            criterion=f"{self.criterion} on validation",
            validation_sensitivity=self.sensitivity,
            validation_specificity=self.specificity,
        )


def _roc(
    y_true_binary: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    y = np.asarray(y_true_binary).astype(bool).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != scores.shape:
        raise ValueError(f"labels {y.shape} and scores {scores.shape} differ in length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need positives and negatives to choose a threshold, got {n_pos} and {n_neg}")
    fpr, tpr, thresholds = roc_curve(y, scores, drop_intermediate=False)
    return fpr, tpr, thresholds, n_pos, n_neg


def choose_threshold(
    y_true_binary: np.ndarray, scores: np.ndarray, target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY
) -> OperatingPoint:
    """The highest threshold ``t`` with ``sensitivity(score >= t) >= target_sensitivity`` on these data.

    Call it on VALIDATION labels ``(N,)`` (0/1) and calibrated probabilities ``(N,)`` of the positive
    class. Among thresholds reaching the target, the highest has the best specificity. ``t`` is one of
    the observed positive scores (the ``ceil(target * n_positive)``-th highest).
    """
    if not 0.0 < target_sensitivity <= 1.0:
        raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
    fpr, tpr, thresholds, n_pos, n_neg = _roc(y_true_binary, scores)
    i = int(np.argmax(tpr >= target_sensitivity - _EPS))
    return OperatingPoint(
        threshold=float(thresholds[i]),
        sensitivity=float(tpr[i]),
        specificity=float(1.0 - fpr[i]),
        criterion=f"sensitivity>={target_sensitivity:g}",
        n_positive=n_pos,
        n_negative=n_neg,
    )


def choose_threshold_for_specificity(
    y_true_binary: np.ndarray, scores: np.ndarray, target_specificity: float = 0.95
) -> OperatingPoint:
    """The lowest threshold ``t`` with ``specificity(score >= t) >= target_specificity`` on these data.

    The lowest such threshold has the best sensitivity: "sensitivity at a specificity". The returned
    threshold is finite (at most the highest score, i.e. at least one image flagged) when the target is
    reachable that way; otherwise it is just above the highest score (nothing flagged, sensitivity 0).
    """
    if not 0.0 <= target_specificity <= 1.0:
        raise ValueError(f"target_specificity must be in [0, 1], got {target_specificity}")
    fpr, tpr, thresholds, n_pos, n_neg = _roc(y_true_binary, scores)
    i = int(np.flatnonzero(1.0 - fpr >= target_specificity - _EPS)[-1])
    threshold = (
        float(thresholds[i]) if np.isfinite(thresholds[i]) else float(np.nextafter(thresholds[1], np.inf))
    )
    return OperatingPoint(
        threshold=threshold,
        sensitivity=float(tpr[i]),
        specificity=float(1.0 - fpr[i]),
        criterion=f"specificity>={target_specificity:g}",
        n_positive=n_pos,
        n_negative=n_neg,
    )


class DecisionRule(StrictModel):
    """How calibrated probabilities become one predicted class; see the module docstring for the rule."""

    thresholds: list[ClassThreshold] = Field(default_factory=list)

    @classmethod
    def argmax(cls) -> DecisionRule:
        """The most probable class."""
        return cls()

    @classmethod
    def from_operating_points(cls, points: Iterable[ClassThreshold]) -> DecisionRule:
        """From stored operating points (``BundleSpec.operating_points``), in the same order."""
        return cls(thresholds=list(points))

    def class_indices(self, labels: Sequence[str]) -> list[int]:
        """Indices in ``labels`` of the thresholded classes; raises ``ValueError`` for unknown labels."""
        unknown = [t.label for t in self.thresholds if t.label not in labels]
        if unknown:
            raise ValueError(f"decision rule names labels not in {list(labels)}: {unknown}")
        return [list(labels).index(t.label) for t in self.thresholds]

    def predict(self, probs: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """Predicted class indices ``(N,)`` from calibrated probabilities ``(N, C)``."""
        probs = np.asarray(probs, dtype=np.float64)
        indices = self.class_indices(labels)
        rest = [c for c in range(probs.shape[1]) if c not in indices] or list(range(probs.shape[1]))
        pred = np.asarray(rest)[probs[:, rest].argmax(axis=1)]
        for c, rule in reversed(list(zip(indices, self.thresholds, strict=True))):
            pred[probs[:, c] >= rule.threshold] = c
        return pred

    def describe(self) -> str:
        """The rule in one sentence."""
        if not self.thresholds:
            return "argmax: the most probable class"
        flags = "; else ".join(f"{t.label} if p({t.label}) >= {t.threshold:.4g}" for t in self.thresholds)
        return f"{flags}; otherwise the most probable class without a threshold"
