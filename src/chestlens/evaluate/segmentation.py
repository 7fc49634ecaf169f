"""Evaluate a segmenter from label maps: per-image, per-class scores and patient-bootstrap summaries.

Label maps: predictions hold ``0`` (background) or ``k`` for ``labels[k - 1]``; targets the same plus
``ignore_index`` (255) for pixels that are not scored (they count in no term of any metric, HD95
included). Binary tasks are the case ``labels = [name]`` (values 0/1). Any array shape works (2-D images,
3-D volumes); pixel counts are per image.

Per image and class, with ``TP/FP/FN`` the pixel counts over scored pixels::

    Dice = 2TP / (2TP + FP + FN)   IoU = TP / (TP + FP + FN)
    sensitivity = TP / (TP + FN)   precision = TP / (TP + FP)

Empty-mask policy (``EMPTY_MASK_POLICY``; "empty" = no scored pixel of that class):

=====================  ==================  =========  ===========  =========  =========
target / prediction    case                Dice, IoU  sensitivity  precision  HD95
=====================  ==================  =========  ===========  =========  =========
empty / empty          ``true_negative``   1          undefined    undefined  undefined
empty / non-empty      ``false_positive``  0          undefined    0          undefined
non-empty / empty      ``false_negative``  0          0            undefined  undefined
non-empty / non-empty  ``true_positive``   formula    formula      formula    formula
=====================  ==================  =========  ===========  =========  =========

(``true_positive`` means both are non-empty, overlapping or not.) Aggregates per class:

* ``dice``, ``iou``, ``sensitivity``: mean over images with a non-empty target (empty-target images are
  reported by the case counts instead); ``precision``: mean over those where it is defined (prediction
  non-empty); ``hd95_px``/``hd95_mm``: mean over ``true_positive`` images;
* ``dice_all_images``: mean Dice over all images with the policy above (true negatives score 1, false
  positives 0; the Kaggle SIIM pneumothorax metric);
* ``pooled_*``: dataset-level metrics from the pixel counts summed over all images.

HD95 (optional): the larger of the two directed 95th-percentile distances between the surfaces
(mask pixels with a background neighbour in the cross-shaped neighbourhood, the image border counting as
background) of prediction and target, from scipy's Euclidean distance transform; in pixels, and in mm
when the pixel spacing is given. Confidence intervals: percentile bootstrap over patients
(:mod:`chestlens.evaluate.bootstrap`); undefined numbers are ``None`` with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field
from scipy import ndimage

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.bootstrap import Estimate, Statistic, bootstrap, estimate, patient_codes
from chestlens.evaluate.classification import MIN_PATIENTS
from chestlens.evaluate.results import BootstrapInfo
from chestlens.preprocess.labels import IGNORE_INDEX
from chestlens.strict import StrictModel

EmptyCase = Literal["true_negative", "false_positive", "false_negative", "true_positive"]
EMPTY_MASK_POLICY = (
    "Per image and class, 'empty' = no scored pixel of the class. Target and prediction empty: "
    "true_negative, Dice = IoU = 1, sensitivity/precision/HD95 undefined. Target empty, prediction not: "
    "false_positive, Dice = IoU = precision = 0. Target not empty, prediction empty: false_negative, "
    "Dice = IoU = sensitivity = 0. Both non-empty: true_positive, all by formula. Mean Dice/IoU/"
    "sensitivity/precision are over images with a non-empty target (precision where defined), "
    "dice_all_images over all images, HD95 over true_positive images."
)


class ClassScore(StrictModel):
    """One class on one image (undefined ratios are None, see the empty-mask policy)."""

    label: str
    case: EmptyCase
    tp: int
    fp: int
    fn: int
    dice: float
    iou: float
    sensitivity: float | None
    precision: float | None
    hd95_px: float | None = None
    hd95_mm: float | None = None


class CaseCounts(StrictModel):
    """Images per empty-mask case (see :data:`EMPTY_MASK_POLICY`)."""

    true_negative: int
    false_positive: int
    false_negative: int
    true_positive: int


class SegClassMetrics(StrictModel):
    """Aggregated metrics of one class (see the module docstring for which images each mean covers)."""

    label: str
    n_images: int
    cases: CaseCounts
    dice: Estimate
    iou: Estimate
    sensitivity: Estimate
    precision: Estimate
    dice_all_images: Estimate
    pooled_dice: Estimate
    pooled_iou: Estimate
    pooled_sensitivity: Estimate
    pooled_precision: Estimate
    hd95_px: Estimate
    hd95_mm: Estimate


class SegmentationReport(StrictModel):
    """Evaluation of a segmenter. Research use only."""

    disclaimer: str = RESEARCH_USE_DISCLAIMER
    labels: list[str]
    empty_mask_policy: str = EMPTY_MASK_POLICY
    bootstrap: BootstrapInfo
    n_images: int
    n_patients: int
    per_class: list[SegClassMetrics]
    warnings: list[str] = Field(default_factory=list)


def labels_from_logits(logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Label map from logits ``(..., C, H, W)``: ``sigmoid >= threshold`` for C = 1, else argmax."""
    logits = np.asarray(logits)
    if logits.shape[-3] == 1:
        return (logits[..., 0, :, :] >= np.log(threshold / (1.0 - threshold))).astype(np.uint8)
    return logits.argmax(axis=-3).astype(np.uint8)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1))


def hd95(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th-percentile Hausdorff distance of two non-empty boolean masks (pixels; mm with ``spacing``).

    ``max(P95 of d(pred surface -> target surface), P95 of d(target surface -> pred surface))``.
    """
    both = np.argwhere(pred | target)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(both.min(0), both.max(0), strict=True))
    pred_s, target_s = _surface(pred[box]), _surface(target[box])
    to_target = ndimage.distance_transform_edt(~target_s, sampling=spacing)[pred_s]
    to_pred = ndimage.distance_transform_edt(~pred_s, sampling=spacing)[target_s]
    return float(max(np.percentile(to_target, 95), np.percentile(to_pred, 95)))


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def score_image(
    pred: np.ndarray,
    target: np.ndarray,
    labels: Sequence[str],
    *,
    ignore_index: int = IGNORE_INDEX,
    spacing: Sequence[float] | None = None,
    with_hd95: bool = False,
) -> list[ClassScore]:
    """Scores of every class on one image.

    Args:
        pred: predicted label map (any shape), values ``0..len(labels)``.
        target: true label map of the same shape, plus ``ignore_index``.
        labels: foreground class names; value ``k`` is ``labels[k - 1]``.
        spacing: pixel spacing in mm per axis (e.g. ``(row_mm, col_mm)``) for ``hd95_mm``.
        with_hd95: compute HD95 (costs two distance transforms per true-positive class).
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ChestlensInputError(None, f"prediction {pred.shape} and target {target.shape} differ in shape")
    scored = target != ignore_index
    scores = []
    for k, label in enumerate(labels, start=1):
        p, t = (pred == k) & scored, target == k
        tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
        case: EmptyCase = (
            ("true_positive" if p.any() else "false_negative")
            if t.any()
            else ("false_positive" if p.any() else "true_negative")
        )
        empty_both = case == "true_negative"
        hd_px = hd_mm = None
        if with_hd95 and case == "true_positive":
            hd_px = hd95(p, t)
            hd_mm = None if spacing is None else hd95(p, t, spacing)
        scores.append(
            ClassScore(
                label=label,
                case=case,
                tp=tp,
                fp=fp,
                fn=fn,
                dice=1.0 if empty_both else 2 * tp / (2 * tp + fp + fn),
                iou=1.0 if empty_both else tp / (tp + fp + fn),
                sensitivity=_ratio(tp, tp + fn),
                precision=_ratio(tp, tp + fp),
                hd95_px=hd_px,
                hd95_mm=hd_mm,
            )
        )
    return scores


_MEANS = {  # metric -> (ClassScore field, which images, reason when no image qualifies)
    "dice": ("dice", "target", "no image with a non-empty target"),
    "iou": ("iou", "target", "no image with a non-empty target"),
    "sensitivity": ("sensitivity", "target", "no image with a non-empty target"),
    "precision": ("precision", "target", "no image with non-empty target and prediction"),
    "dice_all_images": ("dice", "all", "no image"),
    "hd95_px": ("hd95_px", "target", "HD95 not computed (with_hd95=False) or no true_positive image"),
    "hd95_mm": ("hd95_mm", "target", "HD95 not computed, no pixel spacing, or no true_positive image"),
}
_POOLED = {  # metric -> reason when undefined
    "pooled_dice": "no pixel of the class in any target or prediction",
    "pooled_iou": "no pixel of the class in any target or prediction",
    "pooled_sensitivity": "no target pixel of the class",
    "pooled_precision": "no predicted pixel of the class",
}


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _statistic(scores: Sequence[Sequence[ClassScore]]) -> Statistic:
    """Per-class weighted metrics: maps weights ``(B, N)`` to ``{name: (B, K)}`` (NaN = undefined)."""
    counts = {
        c: np.array([[getattr(s, c) for s in row] for row in scores], float) for c in ("tp", "fp", "fn")
    }
    has_target = counts["tp"] + counts["fn"] > 0
    values = {}
    for name, (field, images, _) in _MEANS.items():
        raw = np.array([[getattr(s, field) for s in row] for row in scores], dtype=float)  # None -> NaN
        values[name] = np.where(has_target, raw, np.nan) if images == "target" else raw

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name, v in values.items():
            defined = np.isfinite(v)
            out[name] = _divide(weights @ np.where(defined, v, 0.0), weights @ defined)
        tp, fp, fn = (weights @ counts[c] for c in ("tp", "fp", "fn"))
        out["pooled_dice"] = _divide(2 * tp, 2 * tp + fp + fn)
        out["pooled_iou"] = _divide(tp, tp + fp + fn)
        out["pooled_sensitivity"] = _divide(tp, tp + fn)
        out["pooled_precision"] = _divide(tp, tp + fp)
        return out

    return statistic


def summarise_segmentation(
    scores: Sequence[Sequence[ClassScore]],
    patient_ids: Sequence[str] | np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> SegmentationReport:
    """Aggregate per-image scores (``scores[i]`` from :func:`score_image`) with patient-bootstrap CIs.

    Args:
        patient_ids: ``(N,)`` patient of each image (the bootstrap resamples patients, not images).
        n_boot: bootstrap resamples (0 = point estimates only).
    """
    patients = np.asarray(patient_ids)
    if not len(scores) or len(scores) != len(patients):
        raise ChestlensInputError(
            None, f"need one patient id per image: {len(scores)} images, {len(patients)} ids"
        )
    labels = [s.label for s in scores[0]]
    statistic = _statistic(scores)
    point = {name: v[0] for name, v in statistic(np.ones((1, len(scores)))).items()}
    samples = bootstrap(statistic, patients, n_boot, seed) if n_boot > 0 else {}

    def est(name: str, k: int, reason: str) -> Estimate:
        return estimate(point[name][k], samples[name][:, k] if samples else None, ci, reason)

    per_class = []
    for k, label in enumerate(labels):
        cases = [row[k].case for row in scores]
        per_class.append(
            SegClassMetrics(
                label=label,
                n_images=len(scores),
                cases=CaseCounts(**{c: cases.count(c) for c in CaseCounts.model_fields}),
                **{name: est(name, k, reason) for name, (_, _, reason) in _MEANS.items()},
                **{name: est(name, k, reason) for name, reason in _POOLED.items()},
            )
        )
    report = SegmentationReport(
        labels=labels,
        bootstrap=BootstrapInfo(n_boot=n_boot, seed=seed, ci=ci),
        n_images=len(scores),
        n_patients=patient_codes(patients)[1],
        per_class=per_class,
    )
    report.warnings = _warnings(report)
    return report


def _warnings(report: SegmentationReport) -> list[str]:
    out = [
        f"Class {m.label} has no image with a non-empty target: "
        "its mean Dice, IoU and sensitivity are undefined."
        for m in report.per_class
        if m.cases.false_negative + m.cases.true_positive == 0
    ]
    if report.n_patients < MIN_PATIENTS:
        out.append(
            f"Only {report.n_patients} patients (< {MIN_PATIENTS}): "
            "bootstrap confidence intervals are unreliable."
        )
    return out


def evaluate_segmentation(
    preds: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    labels: Sequence[str],
    patient_ids: Sequence[str] | np.ndarray,
    *,
    spacings: Sequence[Sequence[float] | None] | None = None,
    with_hd95: bool = False,
    ignore_index: int = IGNORE_INDEX,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> SegmentationReport:
    """:func:`score_image` on every image, then :func:`summarise_segmentation`.

    ``spacings[i]`` is image ``i``'s pixel spacing in mm per axis (or None); needs ``with_hd95``.
    """
    if len(preds) != len(targets):
        raise ChestlensInputError(None, f"{len(preds)} predictions but {len(targets)} targets")
    spacings = spacings if spacings is not None else [None] * len(preds)
    scores = [
        score_image(p, t, labels, ignore_index=ignore_index, spacing=s, with_hd95=with_hd95)
        for p, t, s in zip(preds, targets, spacings, strict=True)
    ]
    return summarise_segmentation(scores, patient_ids, n_boot=n_boot, seed=seed, ci=ci)
