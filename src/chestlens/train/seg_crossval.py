"""Patient-grouped k-fold cross-validation of a segmenter recipe: ``chestlens train segment --folds K``.

A dozen test images say little about a segmenter. Here every image with a mask is tested exactly once, by
a model that never saw its patient group, with the protocol of the classifier CV
(:mod:`chestlens.train.crossval`):

1. the run's split table gives the patient groups (patients linked across ids, sources and near-duplicate
   pixels); groups are dealt into ``K`` folds stratified by source (``StratifiedGroupKFold``, seeded);
2. every image and label map is decoded once at the recipe's input size;
3. for fold ``k``: test = fold ``k``; about a fifth of the other folds' patient groups = validation (the
   best epoch by validation mean Dice); train = the rest; the same engine and task as ``train segment``;
4. the out-of-fold Dice of every image and class (the empty-mask policy of
   :func:`chestlens.evaluate.segmentation.score_image`, on the model grid) is pooled: per class the mean
   with a patient-bootstrap 95% CI, the per-fold means (mean and standard deviation), and the 5th
   percentile image (the worst cases matter for a quality gate or a lung crop).

Outputs under ``cfg.out``: ``seg-cv-report.json``, ``seg-cv-report.md`` and ``oof-dice.csv`` (one row per
image: patient, source, fold, Dice per class). No bundle is written: a recipe chosen here is then trained
with ``train segment`` (no ``--folds``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from chestlens.atomic import write_text_atomic
from chestlens.data.seg_tensors import segmented_images
from chestlens.data.splits import SPLITS
from chestlens.data.tensors import LabelledImages
from chestlens.evaluate.bootstrap import bootstrap, estimate, estimate_text
from chestlens.evaluate.seg_eval import foreground_labels, predict_label_maps
from chestlens.evaluate.segmentation import score_image
from chestlens.models.device import resolve_device
from chestlens.train.config import SegmentConfig
from chestlens.train.crossval import assign_folds, fold_roles
from chestlens.train.engine import train_model
from chestlens.train.run import split_table, start_run
from chestlens.train.segment import SegmentationTask, masked_samples, new_segmenter, segmenter_spec

log = logging.getLogger(__name__)

SEG_CV_JSON = "seg-cv-report.json"
SEG_CV_MARKDOWN = "seg-cv-report.md"
OOF_DICE_CSV = "oof-dice.csv"
WORST_PERCENTILE = 5.0


def cross_validate_segmenter(
    cfg: SegmentConfig, folds: int, *, progress: bool = True, n_boot: int = 1000
) -> dict[str, Any]:
    """Run ``folds``-fold patient-grouped cross-validation of ``cfg``'s segmenter recipe; returns the
    report (also written to ``cfg.out``). See the module docstring for the protocol."""
    _, out, root = start_run(cfg)
    target, samples = masked_samples(cfg, root)
    table = split_table(cfg, target.name, root, samples, out)
    spec = segmenter_spec(cfg, target)
    labels = foreground_labels(spec)
    items = [item for split in SPLITS for item in table.labelled(samples, split)]
    log.info("decoding %d images and %s label maps at %d px", len(items), target.name, cfg.input_size)
    data = segmented_images(items, target.name, spec.preprocess)
    group_fold = assign_folds(table, folds, cfg.split_seed)
    fold_of_image = np.asarray([group_fold[g] for g in data.patient_ids])
    device = resolve_device(cfg.device)

    dice = np.full((len(data), len(labels)), np.nan)
    per_fold = []
    for fold in range(folds):
        roles = fold_roles(fold_of_image, data.patient_ids, fold)
        train, val, test = (data.subset(roles[s]) for s in SPLITS)
        fold_cfg = cfg.model_copy(update={"out": str(out / f"fold-{fold}")})
        model = new_segmenter(fold_cfg, target)
        task = SegmentationTask(fold_cfg, spec.preprocess, labels, train, val)
        outcome = train_model(model, fold_cfg, task, out / f"fold-{fold}", progress=progress)
        model.load_state_dict(outcome.best_state)
        preds = predict_label_maps(model, spec.preprocess, test.images, device=device)
        fold_dice = np.asarray(
            [
                [s.dice for s in score_image(p, t, labels)]
                for p, t in zip(preds, test.targets.numpy(), strict=True)
            ]
        )
        dice[roles["test"]] = fold_dice
        per_fold.append(
            {
                "fold": fold,
                "n_train": len(train),
                "n_val": len(val),
                "n_test": len(test),
                "test_mean_dice": dict(zip(labels, np.nanmean(fold_dice, axis=0).tolist(), strict=True)),
                "best_epoch": outcome.best_epoch,
                "best_val_mean_dice": outcome.best_score,
            }
        )
    report = _report(cfg, target.name, labels, data.patient_ids, dice, per_fold, folds, n_boot)
    _write_outputs(out, report, data, fold_of_image, labels, dice)
    return report


def _report(
    cfg: SegmentConfig,
    target: str,
    labels: list[str],
    patient_ids: tuple[str, ...],
    dice: np.ndarray,
    per_fold: list[dict[str, Any]],
    folds: int,
    n_boot: int,
) -> dict[str, Any]:
    """Per class: out-of-fold mean Dice with a patient-bootstrap CI, fold mean and SD, 5th percentile."""
    patients = np.asarray(patient_ids)

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:  # weights (B, N) -> weighted means (B, C)
        valid = np.isfinite(dice)
        filled = np.where(valid, dice, 0.0)
        return {"mean": (weights @ filled) / np.maximum(weights @ valid, 1e-12)}

    samples = bootstrap(statistic, patients, n_boot, cfg.split_seed)["mean"]
    classes = {}
    for c, label in enumerate(labels):
        fold_means = [fold["test_mean_dice"][label] for fold in per_fold]
        classes[label] = {
            "oof_mean_dice": estimate(float(np.nanmean(dice[:, c])), samples[:, c], 0.95).model_dump(),
            "fold_mean": float(np.nanmean(fold_means)),
            "fold_sd": float(np.nanstd(fold_means, ddof=1)) if folds > 1 else None,
            f"p{WORST_PERCENTILE:g}_image_dice": float(np.nanpercentile(dice[:, c], WORST_PERCENTILE)),
        }
    return {
        "kind": "segmenter cross-validation",
        "target": target,
        "folds": folds,
        "n_images": len(dice),
        "n_patients": len(set(patient_ids)),
        "recipe": cfg.model_dump(mode="json", exclude={"out"}),
        "evaluated_on": "the model grid (input_size px), out of fold",
        "classes": classes,
        "per_fold": per_fold,
    }


def seg_cv_markdown(report: dict[str, Any]) -> list[str]:
    """The report as Markdown lines: one row per class."""
    recipe = report["recipe"]
    lines = [
        f"# Segmenter cross-validation: {report['target']} ({recipe['arch']}, {recipe['encoder']}, "
        f"{recipe['input_size']} px)",
        "",
        f"{report['folds']} patient-grouped folds; {report['n_images']} images of {report['n_patients']} "
        f"patient groups, each tested once by a model that never saw its patient; Dice on "
        f"{report['evaluated_on']}; 95% CIs by patient bootstrap.",
        "",
        "| class | out-of-fold mean Dice [95% CI] | fold mean ± SD | 5th percentile image |",
        "|---|---|---|---|",
    ]
    for label, row in report["classes"].items():
        sd = f" ± {row['fold_sd']:.3f}" if row["fold_sd"] is not None else ""
        worst = row[f"p{WORST_PERCENTILE:g}_image_dice"]
        lines.append(
            f"| {label} | {estimate_text(row['oof_mean_dice'])} | {row['fold_mean']:.3f}{sd} | {worst:.3f} |"
        )
    return lines


def _write_outputs(
    out: Path,
    report: dict[str, Any],
    data: LabelledImages,
    fold_of_image: np.ndarray,
    labels: list[str],
    dice: np.ndarray,
) -> None:
    """``seg-cv-report.json``, ``seg-cv-report.md`` and ``oof-dice.csv`` under ``out`` (atomically)."""
    write_text_atomic(out / SEG_CV_JSON, json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / SEG_CV_MARKDOWN, "\n".join(seg_cv_markdown(report)) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["uid", "patient_id", "source", "fold", *[f"dice_{label}" for label in labels]])
    for i in range(len(dice)):
        cells = ["" if not np.isfinite(v) else f"{v:.4f}" for v in dice[i]]
        writer.writerow([data.uids[i], data.patient_ids[i], data.sources[i], int(fold_of_image[i]), *cells])
    write_text_atomic(out / OOF_DICE_CSV, buffer.getvalue())
