"""Run a segmenter bundle over images with masks and write its evaluation report.

Shared by ``chestlens train segment`` (validation and test reports) and ``chestlens evaluate``
(:func:`chestlens.evaluate.bundle_eval.evaluate_samples`). Predicted
and true label maps are compared on the network's ``S x S`` grid (images and masks stretched to the input
size as at inference, masks with nearest neighbour, :mod:`chestlens.data.seg_tensors`); pixels with the
ignore label are not scored. Decisions: binary foreground where ``sigmoid(logit) >= 0.5``; multiclass the
class of the largest logit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.atomic import write_text_atomic
from chestlens.data.native_masks import native_label_map
from chestlens.data.records import Sample
from chestlens.data.seg_tensors import segmented_images
from chestlens.data.tensors import LabelledImages
from chestlens.evaluate.bundle_eval import triple
from chestlens.evaluate.plots import dice_histogram_figure, save_png, worst_cases_figure
from chestlens.evaluate.seg_report import ImageScore, write_segmentation_report
from chestlens.evaluate.segmentation import (
    ClassScore,
    SegmentationReport,
    labels_from_logits,
    score_image,
    summarise_segmentation,
)
from chestlens.models.bundle import Bundle
from chestlens.models.inference import iter_logits
from chestlens.models.spec import BundleSpec
from chestlens.preprocess.labels import IGNORE_INDEX
from chestlens.preprocess.spec import PreprocessSpec

#: The native-resolution figures (:func:`native_summary`) beside the report.
NATIVE_JSON = "native.json"
#: The row of a multi-class report that scores all foreground classes merged (binary infection Dice).
ANY_LESION = "any_lesion"
#: How many of the lowest-Dice images the overlay figure shows.
WORST_CASES = 4
DECISIONS = {
    "binary": "foreground where sigmoid(logit) >= 0.5",
    "multiclass": "per pixel, the class with the largest logit",
}


def foreground_labels(spec: BundleSpec) -> list[str]:
    """The scored classes of a segmenter bundle: label-map value ``k`` is ``labels[k - 1]``."""
    return list(spec.labels) if spec.architecture_kwargs["mode"] == "binary" else list(spec.labels[1:])


def predict_label_maps(
    model: torch.nn.Module,
    preprocess: PreprocessSpec,
    images: torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> np.ndarray:
    """Predicted ``uint8`` label maps ``(N, S, S)`` of grey ``[0, 1]`` images ``(N, 1, S, S)``."""
    maps = [
        labels_from_logits(logits.numpy())
        for logits in iter_logits(model, images, preprocess, batch_size=batch_size, device=device)
    ]
    size = preprocess.input_size
    return np.concatenate(maps) if maps else np.zeros((0, size, size), dtype=np.uint8)


def with_any_lesion(
    scores: list[list[ClassScore]], preds: np.ndarray, targets: np.ndarray, labels: Sequence[str]
) -> list[list[ClassScore]]:
    """With two or more foreground classes, append to each image's scores the binary :data:`ANY_LESION`
    score (every foreground class merged, in prediction and truth; ignored pixels stay ignored)."""
    if len(labels) < 2:
        return scores
    merged_targets = np.where(targets == IGNORE_INDEX, IGNORE_INDEX, targets > 0).astype(np.uint8)
    return [
        [*row, *score_image((p > 0).astype(np.uint8), t, [ANY_LESION])]
        for row, p, t in zip(scores, preds, merged_targets, strict=True)
    ]


def _per_source(
    scores: Sequence[Sequence[ClassScore]], data: LabelledImages, n_boot: int, seed: int
) -> dict[str, SegmentationReport]:
    sources = np.asarray(data.sources)
    patients = np.asarray(data.patient_ids)
    return {
        source: summarise_segmentation(
            [scores[i] for i in np.flatnonzero(sources == source)],
            patients[sources == source],
            n_boot=n_boot,
            seed=seed,
        )
        for source in sorted(set(data.sources))
    }


def _figures(
    scores: Sequence[Sequence[ClassScore]],
    data: LabelledImages,
    preds: np.ndarray,
    labels: Sequence[str],
    out_dir: Path,
) -> dict[str, Path]:
    """The per-image Dice histogram and the overlays of the :data:`WORST_CASES` lowest mean Dice images."""
    dice = {
        label: np.array([row[k].dice for row in scores if row[k].case in ("true_positive", "false_negative")])
        for k, label in enumerate(labels)
    }
    mean_dice = np.array([np.mean([s.dice for s in row]) for row in scores])
    worst = np.argsort(mean_dice, kind="stable")[:WORST_CASES]
    titles = [f"{data.uids[i].rsplit('/', 1)[-1]}: Dice {mean_dice[i]:.3f}" for i in worst]
    figures = {
        "dice_histogram": dice_histogram_figure(dice, len(scores)),
        "worst_cases": worst_cases_figure(
            data.images[worst, 0].numpy(), data.targets[worst].numpy(), preds[worst], labels, titles
        ),
    }
    return {name: save_png(figure, Path(out_dir) / f"{name}.png") for name, figure in figures.items()}


def evaluate_label_maps(
    spec: BundleSpec,
    data: LabelledImages,
    preds: np.ndarray,
    out_dir: Path,
    *,
    title: str,
    data_info: dict[str, Any],
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[SegmentationReport, dict[str, Path]]:
    """Score predicted label maps ``(N, S, S)`` against ``data.targets`` and write the report to ``out_dir``.

    Returns the overall report and the written files (``json``, ``html`` and the figure PNGs).
    """
    labels = foreground_labels(spec)
    targets = data.targets.numpy()
    class_scores = [score_image(p, t, labels) for p, t in zip(preds, targets, strict=True)]
    scores = with_any_lesion(class_scores, preds, targets, labels)
    report = summarise_segmentation(scores, data.patient_ids, n_boot=n_boot, seed=seed)
    per_image = [
        ImageScore(uid=uid, patient_id=patient, source=source, dice={s.label: s.dice for s in row})
        for uid, patient, source, row in zip(data.uids, data.patient_ids, data.sources, scores, strict=True)
    ]
    figures = _figures(class_scores, data, preds, labels, out_dir)
    model_info = {
        "name": spec.name,
        "version": spec.version,
        "architecture": spec.architecture,
        **spec.architecture_kwargs,
        "target": spec.task,
        "input_size": spec.preprocess.input_size,
        "disclaimer": RESEARCH_USE_DISCLAIMER,
    }
    files = write_segmentation_report(
        report,
        _per_source(scores, data, n_boot, seed),
        per_image,
        figures,
        out_dir,
        title=title,
        decision=DECISIONS[spec.architecture_kwargs["mode"]],
        model_info=model_info,
        data_info=data_info,
    )
    return report, {**files, **figures}


LUNG_FIELD_BASELINE = "every lung pixel is the first lesion class, nothing else"


def lung_field_baseline(images: torch.Tensor, *, lungs: str) -> np.ndarray:
    """The trivial lesion segmentation :data:`LUNG_FIELD_BASELINE`: label maps ``(N, S, S)`` (1 inside the
    lung fields found by the ``lungs`` segmenter bundle, 0 elsewhere) for grey ``[0, 1]`` images
    ``(N, 1, S, S)``."""
    from chestlens.data.transforms import resize_unit
    from chestlens.models.bundle import load_bundle
    from chestlens.preprocess.resize import resize_nearest

    lung_bundle = load_bundle(lungs)
    pre = lung_bundle.spec.preprocess
    resized = resize_unit(images, pre.input_size)
    lung_maps = predict_label_maps(lung_bundle.build_model(), pre, resized)
    return resize_nearest(lung_maps, images.shape[-2:]).astype(np.uint8)


def seg_metrics_summary(report: SegmentationReport) -> dict[str, Any]:
    """The headline numbers of a segmentation report ((value, low, high) triples) for a bundle's
    ``metrics`` field; ``mean_dice`` is the mean of the classes' Dice where defined (no interval), the
    merged :data:`ANY_LESION` row left out."""
    defined = [m.dice.value for m in report.per_class if m.dice.value is not None and m.label != ANY_LESION]
    return {
        "n_images": report.n_images,
        "n_patients": report.n_patients,
        "mean_dice": float(np.mean(defined)) if defined else None,
        "per_class": {
            m.label: {
                **{
                    name: triple(getattr(m, name))
                    for name in ("dice", "iou", "sensitivity", "precision", "dice_all_images")
                },
                "cases": m.cases.model_dump(),
            }
            for m in report.per_class
        },
        "warnings": list(report.warnings),
    }


def native_scores(
    logits: Sequence[torch.Tensor],
    items: Sequence[tuple[Sample, str, str]],
    target: str,
    labels: Sequence[str],
) -> list[list[ClassScore]]:
    """Per-image scores at the masks' native resolution: each image's grid logits ``(K, S, S)`` are
    resized bilinearly to its mask's size, turned into a label map there (the same decision rule) and
    scored against the native mask (:func:`chestlens.data.native_masks.native_label_map`)."""
    scores = []
    for grid, (sample, _, _) in zip(logits, items, strict=True):
        truth = native_label_map(sample, target)
        resized = F.interpolate(grid[None].float(), size=truth.shape, mode="bilinear", align_corners=False)
        pred = labels_from_logits(resized[0].numpy())
        scores.append(with_any_lesion([score_image(pred, truth, labels)], pred[None], truth[None], labels)[0])
    return scores


def native_summary(
    scores: list[list[ClassScore]], patient_ids: Sequence[str], n_boot: int, seed: int
) -> dict:
    """Headline numbers of :func:`native_scores`: per class the mean Dice with a patient-bootstrap 95% CI
    and the 5th-percentile image Dice (images where the class is in the mask or the prediction)."""
    report = summarise_segmentation(scores, patient_ids, n_boot=n_boot, seed=seed)
    per_class = {}
    for k, metrics in enumerate(report.per_class):
        dice = [
            row[k].dice
            for row in scores
            if row[k].case in ("true_positive", "false_negative", "false_positive")
        ]
        per_class[metrics.label] = {
            "dice": triple(metrics.dice),
            "p5_image_dice": float(np.percentile(dice, 5)) if dice else None,
        }
    return {
        "evaluated_on": "each mask's native resolution (logits resized bilinearly)",
        "per_class": per_class,
    }


def evaluate_segmenter_items(
    bundle: Bundle,
    items: Sequence[tuple[Sample, str, str]],
    out_dir: Path,
    title: str,
    data_info: dict[str, Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    baseline: str | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Evaluate a segmenter bundle on ``(sample, label, patient group)`` items (from
    :func:`chestlens.evaluate.bundle_eval.evaluation_items`); returns the headline numbers
    (:func:`seg_metrics_summary`, with the same Dice at the masks' native resolution under ``native``:
    :func:`native_summary`, also written to ``native.json``) and the report files.

    Args:
        baseline: a lung segmenter bundle: score :func:`lung_field_baseline` on the same images and masks
            instead of ``bundle``'s predictions (the trivial baseline a lesion segmenter must beat).
    """
    spec = bundle.spec
    images = segmented_images(items, spec.task, spec.preprocess)
    native = None
    if baseline is None:
        logits = list(iter_logits(bundle.build_model(), images.images, spec.preprocess, batch_size=1))
        preds = np.concatenate([labels_from_logits(x.numpy()) for x in logits])
        labels = foreground_labels(spec)
        native = native_summary(
            native_scores([x[0] for x in logits], items, spec.task, labels), images.patient_ids, n_boot, seed
        )
    else:
        preds = lung_field_baseline(images.images, lungs=baseline)
        title = f"{title}: lung-field baseline ({LUNG_FIELD_BASELINE})"
    report, files = evaluate_label_maps(
        spec, images, preds, out_dir, title=title, data_info=data_info, n_boot=n_boot, seed=seed
    )
    summary = seg_metrics_summary(report)
    if native is not None:
        summary["native"] = native
        files["native"] = write_text_atomic(Path(out_dir) / NATIVE_JSON, json.dumps(native, indent=2) + "\n")
    return summary, files
