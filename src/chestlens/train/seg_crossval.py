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
   :func:`chestlens.evaluate.segmentation.score_image`; with two or more classes also ``any_lesion``, every
   class merged) is pooled: per class the mean with a patient-bootstrap 95% CI, the per-fold means (mean
   and standard deviation), and the 5th percentile image (the worst cases matter for a quality gate or a
   lung crop); on the model grid and at each mask's native resolution (the grid logits resized
   bilinearly, :func:`chestlens.evaluate.seg_eval.native_scores`);
5. lesion instances, scored as the detector's are: the connected components of each class of every
   out-of-fold predicted label map (8-connectivity, at least ``min_area_px`` pixels on the model grid, the
   detector's rule for its ground truth) become instances, each scored by the mean predicted probability
   of its class inside it (softmax; sigmoid for a binary target); with the true instances of the label
   maps they are scored once, pooled over all images, by
   :func:`chestlens.evaluate.detection.evaluate_detections` (COCO mask and box AP@0.5, AP@0.75, mAP,
   patient-bootstrap CIs), plus the per-fold mask AP@0.5 (mean and SD).

The folds come from :class:`MaskedFolds`, shared with ``train detect --folds K``
(:mod:`chestlens.train.det_crossval`): the same data, target, sources, split table, ``split_seed`` and
``K`` give both the same folds (the reports' ``fold_assignment.fingerprint`` is equal), so their AP rows
can be read side by side.

Outputs under ``cfg.out``: ``seg-cv-report.json``, ``seg-cv-report.md`` and ``oof-dice.csv`` (one row per
image: patient, source, fold, Dice per class on the grid and native). No bundle is written: a recipe chosen
here is then trained with ``train segment`` (no ``--folds``). Each fold's ``checkpoint.pt`` keeps its best
weights, so ``--resume`` continues a killed run and re-scores finished folds without training them again.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestlens.atomic import write_text_atomic
from chestlens.data.annotations import Instance
from chestlens.data.instances import DEFAULT_MIN_AREA_PX, label_map_instances
from chestlens.data.records import Sample
from chestlens.data.seg_tensors import segmented_images
from chestlens.data.splits import SPLITS
from chestlens.data.tasks import SegmentationTarget, get_segmentation_target
from chestlens.data.tensors import LabelledImages
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.bootstrap import bootstrap, estimate, estimate_text
from chestlens.evaluate.det_eval import detection_summary
from chestlens.evaluate.detection import evaluate_detections
from chestlens.evaluate.kinds import write_model_card
from chestlens.evaluate.seg_eval import ANY_LESION, foreground_labels, native_scores, with_any_lesion
from chestlens.evaluate.segmentation import labels_from_logits, score_image
from chestlens.models.device import resolve_device
from chestlens.models.inference import iter_logits
from chestlens.models.spec import DataSummary, read_spec, write_spec
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.train.config import AugmentConfig, SegmentConfig, TrainConfig
from chestlens.train.crossval import fold_fingerprint, image_folds, iter_folds
from chestlens.train.engine import train_model
from chestlens.train.run import SPLIT_FILE, data_summary, split_table, start_run
from chestlens.train.seg_ensemble import write_fold_ensemble
from chestlens.train.segment import SegmentationTask, masked_samples, new_segmenter, segmenter_spec

log = logging.getLogger(__name__)

SEG_CV_JSON = "seg-cv-report.json"
SEG_CV_MARKDOWN = "seg-cv-report.md"
OOF_DICE_CSV = "oof-dice.csv"
WORST_PERCENTILE = 5.0
#: COCO's cap on the instances of one class per image scored for the segmenter's components.
SEGMENTER_MAX_DETS = 100
#: The instance rule shared with the detector's ground truth (:mod:`chestlens.data.instances`).
INSTANCE_RULE = "connected components (8-connectivity) of each class on the model grid"
#: Config keys that, with the same data, fix the split table and so the folds.
FOLD_KEYS = ("target", "sources", "splits", "split_seed", "split_fractions")


@dataclass(frozen=True)
class CVFold:
    """One fold of a :class:`MaskedFolds`: its index, run folder, image indices per role and images."""

    index: int
    out: Path
    roles: dict[str, np.ndarray]
    train: LabelledImages
    val: LabelledImages
    test: LabelledImages


@dataclass(frozen=True)
class MaskedFolds:
    """The images and label maps of a masked target, decoded once, and their patient-grouped folds.

    Shared by the segmenter and detector cross-validations, so both test every image in the same fold:
    :func:`~chestlens.train.crossval.image_folds` over the run's split table (``split_seed``, ``k``).
    Iterating yields the :class:`CVFold` of each fold (test = the fold, validation = about a fifth of the
    other folds' patient groups, train = the rest: :func:`~chestlens.train.crossval.fold_roles`).
    """

    out: Path
    target: SegmentationTarget
    items: tuple[tuple[Sample, str, str], ...]
    data: LabelledImages
    fold_of_image: np.ndarray
    k: int
    assignment: dict[str, Any]
    summary: DataSummary

    def __iter__(self) -> Iterator[CVFold]:
        for fold, roles in iter_folds(self.fold_of_image, self.data.patient_ids, self.k):
            train, val, test = (self.data.subset(roles[s]) for s in SPLITS)
            for role, images in (("train", train), ("validation", val)):
                if not len(images):
                    raise ChestlensInputError(
                        self.assignment["split_table"],
                        f"fold {fold} has no {role} image: too few patient groups for {self.k} folds",
                    )
            yield CVFold(fold, self.out / f"fold-{fold}", roles, train, val, test)


def masked_folds(cfg: TrainConfig, k: int, preprocess: PreprocessSpec) -> MaskedFolds:
    """Start the run (``cfg.out``), take the split table of ``cfg.target`` (:func:`split_table`), decode
    its images and label maps at ``preprocess``'s size and deal the patient groups into ``k`` folds."""
    _, out, root = start_run(cfg)
    target, samples = masked_samples(cfg, root)
    table = split_table(cfg, target.name, root, samples, out)
    items = [item for split in SPLITS for item in table.labelled(samples, split)]
    log.info("decoding %d images and %s label maps at %d px", len(items), target.name, preprocess.input_size)
    data = segmented_images(items, target.name, preprocess)
    fold_of_image = image_folds(table, data.patient_ids, k, cfg.split_seed)
    settings = cfg.model_dump(mode="json")
    assignment = {
        "k": k,
        "split_seed": cfg.split_seed,
        "split_table": str(cfg.splits or out / SPLIT_FILE),
        "split_settings": {key: settings[key] for key in FOLD_KEYS},
        "method": "scikit-learn StratifiedGroupKFold over the split table's patient groups (strata: "
        "source x label), seeded by split_seed",
        "fingerprint": fold_fingerprint(data.uids, fold_of_image),
        "identical_to": "train segment --folds K and train detect --folds K on the same data with the same "
        "split settings and K: same split table, split_seed and K, so the same folds (same fingerprint)",
    }
    return MaskedFolds(
        out, target, tuple(items), data, fold_of_image, k, assignment, data_summary(table, samples)
    )


def class_probabilities(logits: torch.Tensor) -> np.ndarray:
    """Per-pixel class probabilities ``(N, 1 + C, S, S)`` with background first: softmax of multiclass
    logits, ``[1 - p, p]`` of a binary target's sigmoid."""
    if logits.shape[1] == 1:
        p = logits.sigmoid()
        return torch.cat([1 - p, p], dim=1).numpy()
    return logits.softmax(1).numpy()


def component_instances(
    label_map: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], min_area_px: int
) -> list[Instance]:
    """The instances of a predicted label map (:func:`~chestlens.data.instances.label_map_instances`:
    connected components per class, at least ``min_area_px`` pixels), each scored by the mean probability
    of its class inside it (``probabilities`` ``(1 + C, S, S)``, background first)."""
    index = {label: k for k, label in enumerate(labels, start=1)}
    return [
        Instance(
            label=i.label,
            mask=i.mask,
            box=i.box,
            score=float(probabilities[index[i.label]][i.mask].mean()),
        )
        for i in label_map_instances(label_map, labels, min_area_px)
    ]


def maps_and_instances(
    logits: torch.Tensor, labels: Sequence[str], min_area_px: int
) -> tuple[np.ndarray, list[list[Instance]]]:
    """The label maps ``(N, S, S)`` of grid logits ``(N, C, S, S)`` (the decision rule of
    :func:`~chestlens.evaluate.segmentation.labels_from_logits`) and each map's scored instances
    (:func:`component_instances`)."""
    maps = labels_from_logits(logits.numpy())
    probabilities = class_probabilities(logits)
    instances = [
        component_instances(m, p, labels, min_area_px) for m, p in zip(maps, probabilities, strict=True)
    ]
    return maps, instances


def instance_scores(
    plan: MaskedFolds,
    labels: Sequence[str],
    predicted: Sequence[Sequence[Instance]],
    *,
    min_area_px: int,
    max_dets: int,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """COCO AP of the out-of-fold ``predicted`` instances of every image of ``plan`` against the true
    instances of its label map, scored once over all images (95% CIs by patient bootstrap, ``seed``), and
    the mask AP@0.5 of each fold's test images (mean and SD over folds)."""
    data = plan.data
    truth = [label_map_instances(t.numpy(), labels, min_area_px) for t in data.targets]
    rows, cols = data.targets.shape[-2:]
    shapes = [(int(rows), int(cols))] * len(data)
    pooled = evaluate_detections(
        truth,
        predicted,
        shapes,
        labels,
        patient_ids=data.patient_ids,
        max_dets=max_dets,
        n_boot=n_boot,
        seed=seed,
    )
    per_fold = []
    for fold in range(plan.k):
        index = np.flatnonzero(plan.fold_of_image == fold)
        report = evaluate_detections(
            [truth[i] for i in index],
            [predicted[i] for i in index],
            shapes[: len(index)],
            labels,
            patient_ids=[data.patient_ids[i] for i in index],
            iou_types=("segm",),
            max_dets=max_dets,
        )
        per_fold.append(report.segm.ap50.value if report.segm else None)
    values = np.asarray([np.nan if v is None else v for v in per_fold], dtype=float)
    defined = values[np.isfinite(values)]
    summary = detection_summary(pooled)
    summary["per_class"] = {c.label: c.model_dump(mode="json", exclude={"label"}) for c in pooled.per_class}
    return {
        "rule": INSTANCE_RULE,
        "min_area_px": min_area_px,
        "max_dets": max_dets,
        "n_predicted": sum(len(p) for p in predicted),
        "pooled": summary,
        "fold_mask_ap50": {
            "per_fold": per_fold,
            "mean": float(defined.mean()) if len(defined) else None,
            "sd": float(defined.std(ddof=1)) if len(defined) > 1 else None,
        },
    }


def instance_markdown(section: dict[str, Any], who: str) -> list[str]:
    """The lesion-instance rows of a CV report (segmenter or detector, the same layout): overall and per
    class, mask and box AP with patient-bootstrap CIs, and the per-fold mask AP@0.5."""
    pooled = section["pooled"]
    folds = section["fold_mask_ap50"]
    spread = "n/a" if folds["mean"] is None else f"{folds['mean']:.3f}"
    if folds["sd"] is not None:
        spread += f" ± {folds['sd']:.3f}"
    lines = [
        "",
        f"## Lesion instances ({who}): COCO AP, out of fold",
        "",
        f"True instances: {section['rule']}, at least {section['min_area_px']} px. Predicted instances: "
        f"{section['predicted']}, scored by {section['score']}; at most {section['max_dets']} per class and "
        f"image. Every image scored once, pooled over the folds; 95% CIs by patient bootstrap. Fold mask "
        f"AP@0.5 (mean ± SD over folds): {spread}.",
        "",
        "| class | true instances | predicted | mask AP@0.5 [95% CI] | mask AP@0.75 | mask mAP "
        "| box AP@0.5 |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name: str, n_gt: Any, n_pred: Any, segm: dict | None, bbox: dict | None) -> str:
        cells = [estimate_text(segm[key]) if segm else "n/a" for key in ("ap50", "ap75", "map")]
        box = estimate_text(bbox["ap50"]) if bbox else "n/a"
        return f"| {name} | {n_gt} | {n_pred} | {' | '.join(cells)} | {box} |"

    per_class = pooled["per_class"]
    n_gt = sum(c["n_gt"] for c in per_class.values())
    lines.append(row("all classes (mean AP)", n_gt, section["n_predicted"], pooled["segm"], pooled["bbox"]))
    for label, c in per_class.items():
        lines.append(row(label, c["n_gt"], c["n_pred"], c["segm"], c.get("bbox")))
    return lines


def fold_statement(assignment: dict[str, Any]) -> str:
    """One Markdown line saying how the folds were made and that they are shared."""
    k = assignment["k"]
    return (
        f"Folds: {k} folds of patient groups from the split table `{assignment['split_table']}` "
        f"(split_seed {assignment['split_seed']}; {assignment['method']}); identical in `train segment "
        f"--folds {k}` and `train detect --folds {k}` on the same data and split settings (fold "
        f"fingerprint `{assignment['fingerprint']}`)."
    )


def cross_validate_segmenter(
    cfg: SegmentConfig,
    folds: int,
    *,
    progress: bool = True,
    n_boot: int = 1000,
    min_area_px: int = DEFAULT_MIN_AREA_PX,
    resume: bool = False,
    ensemble: bool = False,
    reproduce: str | None = None,
) -> dict[str, Any]:
    """Run ``folds``-fold patient-grouped cross-validation of ``cfg``'s segmenter recipe; returns the
    report (also written to ``cfg.out``). See the module docstring for the protocol.

    Args:
        resume: continue each fold from its ``checkpoint.pt`` (a finished fold is only re-scored).
        ensemble: then write ``cfg.out/bundle``, the fold models as one ensemble bundle whose card leads
            with this cross-validation (:mod:`chestlens.train.seg_ensemble`).
        reproduce: the command line of this run, for the ensemble's card.
        min_area_px: smallest instance (pixels on the model grid), true and predicted; the detector's
            default (:data:`~chestlens.data.instances.DEFAULT_MIN_AREA_PX`) unless given.
    """
    if cfg.fit_all:
        raise ChestlensInputError(
            None, "fit_all trains on every image, cross-validation holds folds out: drop fit_all for --folds"
        )
    spec = segmenter_spec(cfg, get_segmentation_target(cfg.target))
    plan = masked_folds(cfg, folds, spec.preprocess)
    data, labels = plan.data, foreground_labels(spec)
    device = resolve_device(cfg.device)

    scored = [*labels, ANY_LESION] if len(labels) > 1 else list(labels)
    dice = np.full((len(data), len(scored)), np.nan)
    native = np.full_like(dice, np.nan)
    predicted: list[list[Instance]] = [[] for _ in range(len(data))]
    per_fold, states = [], []
    for fold in plan:
        fold_cfg = cfg.model_copy(update={"out": str(fold.out)})
        model = new_segmenter(fold_cfg, plan.target)
        task = SegmentationTask(fold_cfg, spec.preprocess, labels, fold.train, fold.val)
        outcome = train_model(model, fold_cfg, task, fold.out, resume=resume, progress=progress)
        model.load_state_dict(outcome.best_state)
        states.append(outcome.best_state)
        logits = torch.cat(list(iter_logits(model, fold.test.images, spec.preprocess, device=device)))
        preds, instances = maps_and_instances(logits, labels, min_area_px)
        targets = fold.test.targets.numpy()
        grid_scores = with_any_lesion(
            [score_image(p, t, labels) for p, t in zip(preds, targets, strict=True)], preds, targets, labels
        )
        test = fold.roles["test"]
        dice[test] = [[s.dice for s in row] for row in grid_scores]
        items = [plan.items[i] for i in test]
        native[test] = [
            [s.dice for s in row] for row in native_scores(list(logits), items, plan.target.name, labels)
        ]
        for i, image_instances in zip(test, instances, strict=True):
            predicted[i] = image_instances
        per_fold.append(
            {
                "fold": fold.index,
                "n_train": len(fold.train),
                "n_val": len(fold.val),
                "n_test": len(fold.test),
                "test_mean_dice": dict(zip(scored, np.nanmean(dice[test], axis=0).tolist(), strict=True)),
                "best_epoch": outcome.best_epoch,
                "best_val_mean_dice": outcome.best_score,
                "train_seconds": round(sum(epoch["seconds"] for epoch in outcome.history), 1),
            }
        )
    report = _report(
        cfg,
        plan.target.name,
        scored,
        data.patient_ids,
        plan.fold_of_image,
        {"grid": dice, "native": native},
        per_fold,
        folds,
        n_boot,
    )
    report["fold_assignment"] = plan.assignment
    report["instances"] = {
        **instance_scores(
            plan,
            labels,
            predicted,
            min_area_px=min_area_px,
            max_dets=SEGMENTER_MAX_DETS,
            n_boot=n_boot,
            seed=cfg.split_seed,
        ),
        "predicted": "the same rule on each out-of-fold predicted label map",
        "score": "the mean predicted probability of its class inside the component (softmax; sigmoid for "
        "a binary target)",
    }
    for row, ap in zip(per_fold, report["instances"]["fold_mask_ap50"]["per_fold"], strict=True):
        row["test_mask_ap50"] = ap
    _write_outputs(plan.out, report, data, plan.fold_of_image, scored, dice, native)
    if ensemble:
        bundle = write_fold_ensemble(cfg, spec, states, data, per_fold, plan.summary, device, reproduce)
        section = card_cross_validation(
            report, reproduce=reproduce or "", epochs_note=fold_epochs_note(cfg, per_fold)
        )
        attach_cross_validation(bundle, section, None)
    return report


def fold_epochs_note(cfg: TrainConfig, per_fold: Sequence[dict[str, Any]]) -> str:
    """How the folds of a cross-validation were trained, in words (the card's ``epochs_note``)."""
    epochs = ", ".join(str(row["best_epoch"]) for row in per_fold)
    return (
        f"up to {cfg.epochs} epochs, early stop after {cfg.patience} without a better validation mean Dice; "
        f"validation = about a fifth of the other folds' patient groups; best epochs {epochs}"
    )


def _dice_summary(
    dice: np.ndarray, patients: np.ndarray, fold_of_image: np.ndarray, folds: int, n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """Per column of ``dice`` ``(N, C)`` (NaN = not scored): the out-of-fold mean with a patient-bootstrap
    95% CI, the mean and SD of the per-fold means, and the 5th-percentile image."""

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:  # weights (B, N) -> weighted means (B, C)
        valid = np.isfinite(dice)
        filled = np.where(valid, dice, 0.0)
        return {"mean": (weights @ filled) / np.maximum(weights @ valid, 1e-12)}

    samples = bootstrap(statistic, patients, n_boot, seed)["mean"]
    rows = []
    for c in range(dice.shape[1]):
        fold_means = [np.nanmean(dice[fold_of_image == k, c]) for k in range(folds)]
        rows.append(
            {
                "oof_mean_dice": estimate(float(np.nanmean(dice[:, c])), samples[:, c], 0.95).model_dump(),
                "fold_mean": float(np.nanmean(fold_means)),
                "fold_sd": float(np.nanstd(fold_means, ddof=1)) if folds > 1 else None,
                f"p{WORST_PERCENTILE:g}_image_dice": float(np.nanpercentile(dice[:, c], WORST_PERCENTILE)),
            }
        )
    return rows


def _report(
    cfg: SegmentConfig,
    target: str,
    labels: list[str],
    patient_ids: tuple[str, ...],
    fold_of_image: np.ndarray,
    dice: dict[str, np.ndarray],
    per_fold: list[dict[str, Any]],
    folds: int,
    n_boot: int,
) -> dict[str, Any]:
    """Per class (``labels``: the columns of every ``dice`` array ``(N, C)``), on the model grid
    (``dice["grid"]``) and at native resolution (``dice["native"]``): :func:`_dice_summary`."""
    patients = np.asarray(patient_ids)
    summaries = {
        where: _dice_summary(values, patients, fold_of_image, folds, n_boot, cfg.split_seed)
        for where, values in dice.items()
    }
    classes = {
        label: {**summaries["grid"][c], "native": summaries["native"][c]} for c, label in enumerate(labels)
    }
    return {
        "kind": "segmenter cross-validation",
        "target": target,
        "folds": folds,
        "n_images": len(patient_ids),
        "n_patients": len(set(patient_ids)),
        "recipe": cfg.model_dump(mode="json", exclude={"out"}),
        "evaluated_on": "the model grid (input_size px), out of fold",
        "native_evaluated_on": "each mask's native resolution (grid logits resized bilinearly), out of fold",
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
        "| class | out-of-fold mean Dice [95% CI] | fold mean ± SD | 5th percentile image "
        "| native resolution: mean Dice [95% CI] | native: 5th percentile image |",
        "|---|---|---|---|---|---|",
    ]
    worst = f"p{WORST_PERCENTILE:g}_image_dice"
    for label, row in report["classes"].items():
        sd = f" ± {row['fold_sd']:.3f}" if row["fold_sd"] is not None else ""
        native = row.get("native")
        native_cells = (
            f"{estimate_text(native['oof_mean_dice'])} | {native[worst]:.3f}" if native else "n/a | n/a"
        )
        lines.append(
            f"| {label} | {estimate_text(row['oof_mean_dice'])} | {row['fold_mean']:.3f}{sd} "
            f"| {row[worst]:.3f} | {native_cells} |"
        )
    if "fold_assignment" in report:
        lines += ["", fold_statement(report["fold_assignment"])]
    if "instances" in report:
        lines += instance_markdown(report["instances"], "semantic segmenter, connected components")
    return lines


def recipe_label(recipe: dict[str, Any]) -> str:
    """A recipe in a few words: decoder, encoder, input size, loss, the epoch budget and, when recorded, the
    augmentation (rotation, scale range, brightness and contrast, elastic deformation when on)."""
    label = (
        f"{recipe['arch']}, {recipe['encoder']}, {recipe['input_size']} px, {recipe['loss']}, "
        f"{recipe['epochs']} epochs (patience {recipe['patience']})"
    )
    augment = recipe.get("augment")
    if augment:
        low, high = augment["scale"]
        label += (
            f", augment rotation {augment['rotation_deg']:g} deg, scale {low:g}-{high:g}, brightness "
            f"{augment['brightness']:g}, contrast {augment['contrast']:g}"
        )
        elastic = AugmentConfig.model_validate(augment).elastic()  # None for runs recorded before it
        if elastic is not None:
            rms_px, sigma_px, p = elastic
            label += f", elastic {rms_px:g} px (smoothing {sigma_px:g} px, p {p:g})"
    if recipe.get("tta"):
        label += f", test-time {'+'.join(recipe['tta'])}"
    return label


def check_comparable(reports: Sequence[dict[str, Any]]) -> None:
    """Refuse CV reports of different targets or folds (fold fingerprints): their figures would not be
    comparable.

    Raises:
        ChestlensInputError: naming the first report that differs from the first one.
    """
    first, *others = reports
    for report in others:
        if report["target"] != first["target"]:
            raise ChestlensInputError(None, f"reports of {first['target']} and {report['target']} mixed")
        if report["fold_assignment"]["fingerprint"] != first["fold_assignment"]["fingerprint"]:
            raise ChestlensInputError(
                None,
                f"{recipe_label(report['recipe'])} was tested on other folds than "
                f"{recipe_label(first['recipe'])} (fold fingerprints differ)",
            )


def train_seconds(report: dict[str, Any]) -> float:
    """The summed epoch times of a CV report's folds (0 for reports that did not record them)."""
    return sum(fold.get("train_seconds") or 0.0 for fold in report["per_fold"])


def class_rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per class of a CV report: out-of-fold mean Dice, fold mean and SD, 5th-percentile image and, when
    scored, the native-resolution mean Dice (``native``)."""
    worst = f"p{WORST_PERCENTILE:g}_image_dice"
    return {
        label: {
            "oof_mean_dice": row["oof_mean_dice"],
            "fold_mean": row["fold_mean"],
            "fold_sd": row["fold_sd"],
            worst: row[worst],
            **({"native": row["native"]["oof_mean_dice"]} if row.get("native") else {}),
        }
        for label, row in report["classes"].items()
    }


def recipe_table(reports: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines comparing CV reports of one target on the same folds: per recipe and class the
    out-of-fold mean Dice [95% CI], fold SD and 5th-percentile image on the grid, the native-resolution
    mean, the instance mask AP@0.5 and the summed training time of the folds.

    Raises:
        ChestlensInputError: when the reports are of different targets or folds (fold fingerprints
            differ): their figures would not be comparable.
    """
    if not reports:
        return []
    check_comparable(reports)
    first = reports[0]
    labels = list(first["classes"])
    worst = f"p{WORST_PERCENTILE:g}_image_dice"
    lines = [
        f"Recipes for {first['target']} under {first['folds']}-fold patient-grouped CV, the same folds (fold "
        f"fingerprint `{first['fold_assignment']['fingerprint']}`, {first['n_images']} images of "
        f"{first['n_patients']} patient groups): out-of-fold mean Dice [95% CI by patient bootstrap] on the "
        "model grid, fold SD, 5th-percentile image, the same Dice at native resolution.",
        "",
        "| recipe | class | Dice [95% CI] | fold SD | p5 image | native Dice | instance mask AP@0.5 "
        f"| train time ({first['folds']} folds) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        seconds = train_seconds(report)
        instances = report.get("instances")
        ap = estimate_text(instances["pooled"]["segm"]["ap50"]) if instances else "n/a"
        for k, label in enumerate(labels):
            row = report["classes"][label]
            native = row.get("native")
            sd = "n/a" if row["fold_sd"] is None else f"{row['fold_sd']:.3f}"
            lines.append(
                f"| {recipe_label(report['recipe']) if k == 0 else ''} | {label} "
                f"| {estimate_text(row['oof_mean_dice'])} | {sd} | {row[worst]:.3f} "
                f"| {estimate_text(native['oof_mean_dice']) if native else 'n/a'} "
                f"| {ap if k == 0 else ''} | {f'{seconds / 60:.0f} min' if k == 0 and seconds else ''} |"
            )
    return lines


def card_cross_validation(
    report: dict[str, Any],
    *,
    reproduce: str,
    epochs_note: str,
    instances_note: str | None = None,
    compared: Sequence[dict[str, Any]] = (),
    choice: str | None = None,
) -> dict[str, Any]:
    """The ``metrics.cross_validation`` entry of a segmenter bundle: the CV of its recipe (``report``),
    which a model card shows before its single test split.

    Args:
        reproduce: the command that reran this CV.
        epochs_note: the epoch budget and early stopping of the folds, in words.
        instances_note: how the instance AP was scored and which model ships instances (lesion targets);
            None leaves the instance figure out.
        compared: other recipes' CV reports on the same folds (:func:`recipe_table`'s check), shown as
            the recipe table with this one.
        choice: why the shipped recipe was kept or chosen, in words.
    """
    check_comparable([report, *compared])
    section: dict[str, Any] = {
        "folds": report["folds"],
        "n_images": report["n_images"],
        "n_patients": report["n_patients"],
        "fingerprint": report["fold_assignment"]["fingerprint"],
        "epochs_note": epochs_note,
        "classes": class_rows(report),
        "reproduce": reproduce,
    }
    if instances_note is not None and report.get("instances"):
        section["instance_ap50"] = report["instances"]["pooled"]["segm"]["ap50"]
        section["instances_note"] = instances_note
    if compared:
        section["recipes"] = [
            {"recipe": recipe_label(r["recipe"]), "shipped": r is report, "classes": class_rows(r)}
            for r in (report, *compared)
        ]
    if choice:
        section["choice"] = choice
    return section


def with_recipes(section: dict[str, Any], reports: Sequence[dict[str, Any]], choice: str) -> dict[str, Any]:
    """A card's cross-validation ``section`` (:func:`card_cross_validation`) with more recipes compared:
    the CV ``reports`` of other recipes on the section's folds join its recipe table (after the rows it
    has), and ``choice`` replaces its choice text. For rows run after the bundle's card was written, whose
    earlier reports need not be at hand."""
    for report in reports:
        if report["fold_assignment"]["fingerprint"] != section["fingerprint"]:
            raise ChestlensInputError(
                None,
                f"{recipe_label(report['recipe'])} was tested on other folds than the card's recipe "
                "(fold fingerprints differ)",
            )
        if set(class_rows(report)) != set(section["classes"]):
            raise ChestlensInputError(None, f"{recipe_label(report['recipe'])} scored other classes")
    if not section.get("recipes"):
        raise ChestlensInputError(None, "the card has no recipe table to add to: build it from the reports")
    added = [
        {"recipe": recipe_label(r["recipe"]), "shipped": False, "classes": class_rows(r)} for r in reports
    ]
    return {**section, "recipes": [*section["recipes"], *added], "choice": choice}


def attach_cross_validation(bundle_dir: Path, section: dict[str, Any], report_json: Path | None) -> Path:
    """Store ``section`` (:func:`card_cross_validation`) as ``metrics.cross_validation`` of the segmenter
    bundle at ``bundle_dir`` (weights untouched) and re-render its model card from ``report_json`` (its
    test report; None for a fit on all data). Both files are written atomically; returns the card."""
    spec = read_spec(bundle_dir)
    spec.metrics["cross_validation"] = section
    write_spec(bundle_dir, spec)
    return write_model_card(Path(bundle_dir), report_json)


def _write_outputs(
    out: Path,
    report: dict[str, Any],
    data: LabelledImages,
    fold_of_image: np.ndarray,
    labels: list[str],
    dice: np.ndarray,
    native: np.ndarray,
) -> None:
    """``seg-cv-report.json``, ``seg-cv-report.md`` and ``oof-dice.csv`` under ``out`` (atomically)."""
    write_text_atomic(out / SEG_CV_JSON, json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / SEG_CV_MARKDOWN, "\n".join(seg_cv_markdown(report)) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = [f"dice_{label}" for label in labels] + [f"native_dice_{label}" for label in labels]
    writer.writerow(["uid", "patient_id", "source", "fold", *header])
    for i in range(len(dice)):
        cells = ["" if not np.isfinite(v) else f"{v:.4f}" for v in (*dice[i], *native[i])]
        writer.writerow([data.uids[i], data.patient_ids[i], data.sources[i], int(fold_of_image[i]), *cells])
    write_text_atomic(out / OOF_DICE_CSV, buffer.getvalue())
