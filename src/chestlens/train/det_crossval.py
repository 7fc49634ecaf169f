"""Patient-grouped k-fold cross-validation of a detector recipe: ``chestlens train detect --folds K``.

The protocol of the segmenter CV (:mod:`chestlens.train.seg_crossval`), on the same folds:

1. the images and label maps of the recipe's target are decoded once at its input size and dealt into
   ``K`` folds by :class:`~chestlens.train.seg_crossval.MaskedFolds`, the fold iterator shared with
   ``train segment --folds K``: the same data, target, sources, split table, ``split_seed`` and ``K`` give
   the same folds (both reports carry the same ``fold_assignment.fingerprint``);
2. for fold ``k``: test = fold ``k``; about a fifth of the other folds' patient groups = validation; train =
   the rest. The detector is trained as ``train detect`` trains it (:class:`~chestlens.train.detect.
   DetectionTask` on the shared engine), keeping the epoch of the best validation mask AP@0.5, then
   predicts the instances of the test fold;
3. the out-of-fold instances of every image are scored once, pooled, against the true instances of the
   label maps (connected components per class, at least ``min_area_px`` pixels) by
   :func:`chestlens.evaluate.detection.evaluate_detections`: mask and box AP@0.5, AP@0.75 and mAP with
   patient-bootstrap CIs; and the mask AP@0.5 of each fold (mean and SD over folds).

Outputs under ``cfg.out``: ``det-cv-report.json`` and ``det-cv-report.md``. No bundle is written: a recipe
chosen here is then trained with ``train detect`` (no ``--folds``). A backbone taken from a segmenter
bundle is refused: that encoder was trained on slices of every fold.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from chestlens.atomic import write_text_atomic
from chestlens.data.annotations import Instance
from chestlens.errors import ChestlensInputError
from chestlens.models.catalog import is_bundle
from chestlens.models.detection import predict_instances
from chestlens.models.device import resolve_device
from chestlens.train.detect import (
    DetectConfig,
    DetectionTask,
    PackedDetector,
    configured_detector,
    detection_preprocess,
    instance_classes,
)
from chestlens.train.engine import train_model
from chestlens.train.seg_crossval import (
    fold_statement,
    instance_markdown,
    instance_scores,
    masked_folds,
)

log = logging.getLogger(__name__)

DET_CV_JSON = "det-cv-report.json"
DET_CV_MARKDOWN = "det-cv-report.md"


def check_cv_backbone(cfg: DetectConfig) -> None:
    """Refuse a backbone from a segmenter bundle: its encoder saw training slices that are in some fold's
    test images here (every image is tested once)."""
    if cfg.backbone_weights is not None and is_bundle(cfg.backbone_weights):
        raise ChestlensInputError(
            cfg.backbone_weights,
            "a segmenter bundle's encoder was trained on images that cross-validation tests; use "
            "backbone_weights=default (ImageNet) or null for --folds",
        )


def cross_validate_detector(
    cfg: DetectConfig, folds: int, *, progress: bool = True, n_boot: int = 1000
) -> dict[str, Any]:
    """Run ``folds``-fold patient-grouped cross-validation of ``cfg``'s detector recipe; returns the
    report (also written to ``cfg.out``). See the module docstring for the protocol."""
    check_cv_backbone(cfg)
    spec = detection_preprocess(cfg)
    plan = masked_folds(cfg, folds, spec)
    data, classes = plan.data, instance_classes(plan.target.labels)
    device = resolve_device(cfg.device)

    predicted: list[list[Instance]] = [[] for _ in range(len(data))]
    per_fold = []
    for fold in plan:
        fold_cfg = cfg.model_copy(update={"out": str(fold.out)})
        detector = configured_detector(fold_cfg, len(classes))
        model = PackedDetector(detector, classes, cfg.min_area_px)
        task = DetectionTask(fold_cfg, spec, classes, fold.train, fold.val)
        outcome = train_model(model, fold_cfg, task, fold.out, progress=progress)
        model.load_state_dict(outcome.best_state)
        instances = predict_instances(detector, fold.test.images, classes, device)
        for i, image_instances in zip(fold.roles["test"], instances, strict=True):
            predicted[i] = image_instances
        per_fold.append(
            {
                "fold": fold.index,
                "n_train": len(fold.train),
                "n_val": len(fold.val),
                "n_test": len(fold.test),
                "best_epoch": outcome.best_epoch,
                "best_val_map50": outcome.best_score,
            }
        )
    instances = instance_scores(
        plan,
        classes,
        predicted,
        min_area_px=cfg.min_area_px,
        max_dets=cfg.detections_per_image,
        n_boot=n_boot,
        seed=cfg.split_seed,
    )
    for row, ap in zip(per_fold, instances["fold_mask_ap50"]["per_fold"], strict=True):
        row["test_mask_ap50"] = ap
    report = {
        "kind": "detector cross-validation",
        "target": plan.target.name,
        "folds": folds,
        "fold_assignment": plan.assignment,
        "n_images": len(data),
        "n_patients": len(set(data.patient_ids)),
        "recipe": cfg.model_dump(mode="json", exclude={"out"}),
        "evaluated_on": "the model grid (input_size px), out of fold",
        "instances": {
            **instances,
            "predicted": "the detector's instances on each out-of-fold image (mask probability > 0.5)",
            "score": "the Mask R-CNN detection score",
        },
        "per_fold": per_fold,
    }
    out = Path(plan.out)
    write_text_atomic(out / DET_CV_JSON, json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / DET_CV_MARKDOWN, "\n".join(det_cv_markdown(report)) + "\n")
    return report


def det_cv_markdown(report: dict[str, Any]) -> list[str]:
    """The detector CV report as Markdown lines, its AP table laid out as the segmenter CV report's."""
    recipe = report["recipe"]
    lines = [
        f"# Detector cross-validation: {report['target']} ({recipe['arch']}, {recipe['input_size']} px)",
        "",
        f"{report['folds']} patient-grouped folds; {report['n_images']} images of {report['n_patients']} "
        f"patient groups, each tested once by a detector that never saw its patient (early stopping on "
        f"validation mask AP@0.5); scored on {report['evaluated_on']}.",
        "",
        fold_statement(report["fold_assignment"]),
        "",
        "| fold | train / val / test images | best epoch | validation mask AP@0.5 | test mask AP@0.5 |",
        "|---|---|---|---|---|",
    ]
    for row in report["per_fold"]:
        val, test = row["best_val_map50"], row["test_mask_ap50"]
        lines.append(
            f"| {row['fold']} | {row['n_train']} / {row['n_val']} / {row['n_test']} | {row['best_epoch']} | "
            f"{'n/a' if val is None else f'{val:.3f}'} | {'n/a' if test is None else f'{test:.3f}'} |"
        )
    return lines + instance_markdown(report["instances"], "Mask R-CNN detector")
