"""COCO-style average precision of instance masks and boxes, per class, with patient-bootstrap CIs.

Point values are pycocotools' ``COCOeval`` on in-memory COCO objects built from
:class:`~chestlens.data.annotations.Instance` lists with the same encoding as
:func:`~chestlens.data.annotations.export_coco` (masks as compressed RLE, ``bbox`` from the instance's
pixel-corner box), so they equal what ``COCOeval`` gives on the exported files. Settings are COCO's except:
one area range (``all``: COVID-19 lesions have no COCO size classes) and one detection cap ``max_dets``
(COCO: 100; like ``COCOeval``, it keeps the best ``max_dets`` of each class on each image).

Metrics per class, for ``iou_type`` ``"segm"`` (mask IoU) and ``"bbox"`` (box IoU):

* ``ap50``, ``ap75``: AP at IoU 0.50 and 0.75, i.e. the mean over the 101 recall points 0, 0.01, ..., 1
  of the interpolated precision (the largest precision at any recall at least that high);
* ``map``: the mean of AP over IoU 0.50, 0.55, ..., 0.95 (COCO's "AP"; COVID-CT-Mask-Net's "mAP").

A class without ground truth has undefined AP (its detections are still false positives nowhere else);
a class with ground truth and no prediction has AP 0. The overall numbers are the mean over classes
with a defined AP (COCO's convention). Images without ground truth and without predictions are allowed
and change nothing; predictions on images without ground truth are false positives.

Confidence intervals: percentile bootstrap over patients (:mod:`chestlens.evaluate.bootstrap`). A resample
is a weight per image; AP is re-accumulated from ``COCOeval``'s per-image matches with each image's
detections and ground truth counted ``weight`` times, which equals ``COCOeval`` on the duplicated images
(up to the order of detections with exactly equal scores).
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from pydantic import Field

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.data.annotations import ImagePrediction, Instance, coco_annotation
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.bootstrap import Estimate, bootstrap, estimate
from chestlens.evaluate.results import BootstrapInfo
from chestlens.strict import StrictModel

IouType = Literal["segm", "bbox"]
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_AP50, _AP75 = 0, 5  # indices of IoU 0.50 and 0.75 in IOU_THRESHOLDS
_ALL_AREAS = [0.0, 1e10]
_MAX_CELLS = 2_000_000  # bound on (resamples x IoU thresholds x detections) per accumulation chunk
_NO_GT = "no ground-truth instance of this class"


class APScores(StrictModel):
    """AP at IoU 0.50 and 0.75 and the mean over IoU 0.50:0.95 (module docstring)."""

    ap50: Estimate
    ap75: Estimate
    map: Estimate


class ClassDetectionMetrics(StrictModel):
    """One class: instance counts and AP of masks (``segm``) and boxes (``bbox``, None if not asked)."""

    label: str
    n_gt: int
    n_pred: int
    n_images_with_gt: int
    segm: APScores | None
    bbox: APScores | None


class DetectionReport(StrictModel):
    """COCO-style evaluation of an instance detector. Research use only."""

    disclaimer: str = RESEARCH_USE_DISCLAIMER
    labels: list[str]
    iou_types: list[IouType]
    max_dets: int
    bootstrap: BootstrapInfo
    n_images: int
    n_patients: int
    per_class: list[ClassDetectionMetrics]
    segm: APScores | None
    bbox: APScores | None
    warnings: list[str] = Field(default_factory=list)


def evaluate_detections(
    ground_truth: Sequence[Sequence[Instance]],
    predictions: Sequence[Sequence[Instance]],
    shapes: Sequence[tuple[int, int]],
    labels: Sequence[str],
    *,
    patient_ids: Sequence[str] | np.ndarray | None = None,
    iou_types: Sequence[IouType] = ("segm", "bbox"),
    max_dets: int = 100,
    n_boot: int = 0,
    seed: int = 0,
    ci: float = 0.95,
) -> DetectionReport:
    """COCO AP per class and overall (module docstring).

    Args:
        ground_truth: per image, its annotated instances (``score`` ignored); masks are needed for
            ``"segm"``.
        predictions: per image, the predicted instances (``score`` None counts as 1.0, as in
            :func:`~chestlens.data.annotations.export_coco`); the ``max_dets`` best of each class on each
            image count.
        shapes: per image, ``(rows, cols)``; every mask must have this shape.
        labels: the classes evaluated (instance labels must be among them), e.g. ``["ggo", "consolidation"]``.
        patient_ids: ``(N,)`` patient of each image for the bootstrap (default: one patient per image).
        iou_types: ``"segm"`` and/or ``"bbox"``.
        n_boot: bootstrap resamples (0 = point estimates only).
        seed, ci: bootstrap seed and interval level.

    Raises:
        ChestlensInputError: inconsistent lengths, no image, unknown labels, bad boxes or masks, box-only
            instances under ``"segm"``.
    """
    n_images = len(ground_truth)
    patients = np.arange(n_images).astype(str) if patient_ids is None else np.asarray(patient_ids)
    if not n_images or not (len(predictions) == len(shapes) == len(patients) == n_images):
        raise ChestlensInputError(
            None,
            f"need one prediction list, shape and patient id per image: {n_images} ground-truth lists, "
            f"{len(predictions)} prediction lists, {len(shapes)} shapes, {len(patients)} patient ids",
        )
    iou_types = list(dict.fromkeys(iou_types))
    if not iou_types or not set(iou_types) <= {"segm", "bbox"}:
        raise ChestlensInputError(None, f"iou_types must be 'segm' and/or 'bbox', got {iou_types}")
    if "segm" in iou_types and any(i.mask is None for image in (*ground_truth, *predictions) for i in image):
        raise ChestlensInputError(
            None, "box-only instances have no mask: evaluate them with iou_types=['bbox']"
        )
    gt, dt = _coco_pair(ground_truth, predictions, shapes, labels)
    scores = {
        iou: _iou_scores(gt, dt, iou, len(labels), max_dets, patients, n_boot, seed, ci) for iou in iou_types
    }
    per_class = [
        ClassDetectionMetrics(
            label=label,
            n_gt=sum(i.label == label for image in ground_truth for i in image),
            n_pred=sum(i.label == label for image in predictions for i in image),
            n_images_with_gt=sum(any(i.label == label for i in image) for image in ground_truth),
            segm=scores["segm"][0][k] if "segm" in scores else None,
            bbox=scores["bbox"][0][k] if "bbox" in scores else None,
        )
        for k, label in enumerate(labels)
    ]
    return DetectionReport(
        labels=list(labels),
        iou_types=iou_types,
        max_dets=max_dets,
        bootstrap=BootstrapInfo(n_boot=n_boot, seed=seed, ci=ci),
        n_images=n_images,
        n_patients=len(np.unique(patients.astype(str))),
        per_class=per_class,
        segm=scores["segm"][1] if "segm" in scores else None,
        bbox=scores["bbox"][1] if "bbox" in scores else None,
        warnings=[
            f"no ground-truth instance of {c.label!r}: its AP is undefined" for c in per_class if not c.n_gt
        ],
    )


def _coco_pair(
    ground_truth: Sequence[Sequence[Instance]],
    predictions: Sequence[Sequence[Instance]],
    shapes: Sequence[tuple[int, int]],
    labels: Sequence[str],
) -> tuple[dict, dict]:
    """COCO datasets (plain dicts) of the ground truth and of the predictions; image ids 1..N."""
    category_ids = {name: index for index, name in enumerate(labels, start=1)}
    if len(category_ids) != len(labels):
        raise ChestlensInputError(None, f"duplicate labels in {list(labels)}")
    images, gt_anns, dt_anns = [], [], []
    for image_id, (truth, predicted, (rows, cols)) in enumerate(
        zip(ground_truth, predictions, shapes, strict=True), start=1
    ):
        images.append({"id": image_id, "width": int(cols), "height": int(rows)})
        for instances, anns, is_gt in ((truth, gt_anns, True), (predicted, dt_anns, False)):
            where = ImagePrediction(
                f"image {image_id - 1} ({'truth' if is_gt else 'prediction'})", cols, rows, []
            )
            for instance in instances:
                entry = coco_annotation(instance, where, category_ids)
                if is_gt:
                    entry.pop("score", None)
                else:
                    entry.setdefault("score", 1.0)
                anns.append({"id": len(anns) + 1, "image_id": image_id, "iscrowd": 0, **entry})
    categories = [{"id": i, "name": name} for name, i in category_ids.items()]
    return (
        {"images": images, "categories": categories, "annotations": gt_anns},
        {"images": images, "categories": categories, "annotations": dt_anns},
    )


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)  # COCOeval rewrites segmentations in place
    coco.createIndex()
    return coco


def run_cocoeval(gt: dict, dt: dict, iou_type: IouType, max_dets: int) -> COCOeval:
    """``COCOeval`` evaluated and accumulated on all images and categories (one area range, one cap)."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        evaluator = COCOeval(_coco(gt), _coco(dt), iou_type)
        evaluator.params.maxDets = [max_dets]
        evaluator.params.areaRng = [_ALL_AREAS]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _iou_scores(
    gt: dict,
    dt: dict,
    iou_type: IouType,
    n_classes: int,
    max_dets: int,
    patients: np.ndarray,
    n_boot: int,
    seed: int,
    ci: float,
) -> tuple[list[APScores], APScores]:
    """Per-class and overall :class:`APScores` of one IoU type."""
    evaluator = run_cocoeval(gt, dt, iou_type, max_dets)
    precision = evaluator.eval["precision"][:, :, :, 0, 0]  # (T, R, K), -1 = no ground truth
    point = np.where((precision > -1).all(axis=1), precision.mean(axis=1), np.nan).T  # (K, T)
    n_images = len(gt["images"])
    matches = [evaluator.evalImgs[k * n_images : (k + 1) * n_images] for k in range(n_classes)]
    samples = bootstrap(_ap_statistic(matches), patients, n_boot, seed) if n_boot > 0 else {}

    def scores(ap: np.ndarray, boot: np.ndarray | None, reason: str) -> APScores:
        """``ap`` (T,) point AP per IoU threshold; ``boot`` (B, T) the bootstrap samples."""
        return APScores(
            ap50=estimate(ap[_AP50], None if boot is None else boot[:, _AP50], ci, reason),
            ap75=estimate(ap[_AP75], None if boot is None else boot[:, _AP75], ci, reason),
            map=estimate(ap.mean(), None if boot is None else boot.mean(axis=1), ci, reason),
        )

    per_class = [scores(point[k], samples["ap"][:, k] if samples else None, _NO_GT) for k in range(n_classes)]
    with warnings.catch_warnings():  # the mean over no defined class is NaN (undefined), quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        overall_point = np.nanmean(point, axis=0)
        overall_boot = np.nanmean(samples["ap"], axis=1) if samples else None
    return per_class, scores(overall_point, overall_boot, "no ground-truth instance of any class")


def _ap_statistic(matches: list[list[dict | None]]):
    """Statistic for :func:`~chestlens.evaluate.bootstrap.bootstrap`: weights (B, N) -> {"ap": (B, K, T)}.

    ``matches[k][i]`` is ``COCOeval.evalImgs`` of class ``k`` on image ``i`` (None: neither ground truth nor
    detections there).
    """
    prepared = [_prepare_class(rows) for rows in matches]

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        return {"ap": np.stack([weighted_ap(weights, *p) for p in prepared], axis=1)}

    return statistic


def _prepare_class(rows: list[dict | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One class's detections over all images, sorted as ``COCOeval.accumulate`` sorts them.

    Returns:
        ``(image index of each detection (D,), true positive (T, D), false positive (T, D),
        number of non-ignored ground-truth instances per image (N,))``.
    """
    image_of, scores, matched, ignored = [], [], [], []
    n_gt = np.zeros(len(rows))
    for i, row in enumerate(rows):
        if row is None:
            continue
        n_gt[i] = np.count_nonzero(np.asarray(row["gtIgnore"]) == 0)
        image_of.append(np.full(len(row["dtScores"]), i))
        scores.append(np.asarray(row["dtScores"], dtype=float))
        matched.append(np.asarray(row["dtMatches"]).reshape(len(IOU_THRESHOLDS), -1) != 0)
        ignored.append(np.asarray(row["dtIgnore"]).reshape(len(IOU_THRESHOLDS), -1).astype(bool))
    if not scores:
        empty = np.zeros((len(IOU_THRESHOLDS), 0), dtype=bool)
        return np.zeros(0, dtype=int), empty, empty, n_gt
    order = np.argsort(-np.concatenate(scores), kind="mergesort")
    matched_all = np.concatenate(matched, axis=1)[:, order]
    ignored_all = np.concatenate(ignored, axis=1)[:, order]
    return (
        np.concatenate(image_of)[order],
        matched_all & ~ignored_all,
        ~matched_all & ~ignored_all,
        n_gt,
    )


def weighted_ap(
    weights: np.ndarray, image_of: np.ndarray, tp: np.ndarray, fp: np.ndarray, n_gt: np.ndarray
) -> np.ndarray:
    """COCO AP of one class with every image counted ``weights[b, i]`` times.

    Args:
        weights: ``(B, N)`` image weights (a row of ones reproduces ``COCOeval.accumulate``).
        image_of, tp, fp, n_gt: from :func:`_prepare_class` (detections in decreasing score order).

    Returns:
        ``(B, T)`` AP per resample and IoU threshold; NaN where the resample has no ground truth.
    """
    recall_points = np.linspace(0.0, 1.0, 101)
    n_thresholds, n_det = tp.shape
    total_gt = weights @ n_gt  # (B,)
    out = np.zeros((len(weights), n_thresholds))
    step = max(1, _MAX_CELLS // max(n_thresholds * n_det, 1))
    for start in range(0, len(weights), step):
        w = weights[start : start + step, image_of][:, None, :]  # (b, 1, D)
        tp_sum = np.cumsum(w * tp, axis=2)
        fp_sum = np.cumsum(w * fp, axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = tp_sum / total_gt[start : start + step, None, None]
        precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
        envelope = np.maximum.accumulate(precision[..., ::-1], axis=2)[..., ::-1]
        for b in range(len(w)):
            for t in range(n_thresholds):
                index = np.searchsorted(recall[b, t], recall_points, side="left")
                found = index < n_det
                out[start + b, t] = envelope[b, t, index[found]].sum() / len(recall_points)
    out[total_gt == 0] = np.nan
    return out
