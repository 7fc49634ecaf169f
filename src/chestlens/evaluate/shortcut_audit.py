"""Shortcut audit of a classifier: does it look at the lungs, or at whatever else tells sources apart?

Three views of every test image, the lung fields found by a lung segmenter bundle:

* ``full image``: what the model normally sees;
* ``lungs masked out``: the (slightly dilated) lung fields replaced by the image's mean grey;
* ``lungs only``: everything outside the dilated lung fields replaced by the same grey.

A model that reads the lungs should fall towards chance (AUC 0.5) without them and keep most of its
AUC with them alone; a model that still separates the classes with the lungs masked out is using
something else (text markers, borders, patient size, the source's processing): a shortcut. The audit
also reports where the Grad-CAM heatmap of the top class falls: its share of mass inside the lung
fields. All AUCs carry 95% CIs by bootstrap over patients (the evaluation's own machinery).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from chestlens.data.records import Sample
from chestlens.data.tensors import decode_images, labelled_images
from chestlens.evaluate.bootstrap import Estimate
from chestlens.evaluate.calibration import apply_temperature
from chestlens.evaluate.classification import evaluate_classifier
from chestlens.evaluate.operating_point import DecisionRule
from chestlens.models.bundle import Bundle
from chestlens.models.inference import predict_logits
from chestlens.models.registry import get_model_config

VARIANTS = ("full image", "lungs masked out", "lungs only")
#: The lung mask is dilated by this fraction of the image side before masking (covers the lung borders).
DILATION_FRACTION = 0.03
CAM_BATCH = 16


def lung_masks(lungs: Bundle, items: Sequence[tuple[Sample, str, str]], size: int) -> np.ndarray:
    """Bool lung masks ``(N, size, size)`` from the segmenter, nearest-resized to the classifier grid."""
    spec = lungs.spec.preprocess
    images = decode_images([Path(sample.path) for sample, _, _ in items], spec)
    model = lungs.build_model()
    probability = torch.sigmoid(predict_logits(model, images, spec, batch_size=16)[:, :1])
    resized = F.interpolate(probability, size=(size, size), mode="nearest")
    return resized[:, 0].numpy() >= 0.5


def masked_variants(images: torch.Tensor, masks: np.ndarray) -> dict[str, torch.Tensor]:
    """The three views of grey ``[0, 1]`` images ``(N, 1, S, S)`` given lung masks ``(N, S, S)``."""
    size = images.shape[-1]
    radius = max(1, round(DILATION_FRACTION * size))
    structure = ndimage.iterate_structure(ndimage.generate_binary_structure(2, 1), radius)
    dilated = torch.from_numpy(np.stack([ndimage.binary_dilation(m, structure) for m in masks]))[:, None]
    fill = images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images)
    return {
        "full image": images,
        "lungs masked out": torch.where(dilated, fill, images),
        "lungs only": torch.where(dilated, images, fill),
    }


def cam_energy_in_lungs(
    classifier: Bundle, model: torch.nn.Module, images: torch.Tensor, masks: np.ndarray
) -> np.ndarray:
    """Share of each image's top-class Grad-CAM mass inside its lung mask, ``(N,)``; ``model`` is the
    classifier's built module."""
    from chestlens.data.transforms import normalise
    from chestlens.pipeline.cam import energy_inside, logits_and_cams

    layer = get_model_config(classifier.spec.architecture).cam_layer
    shares = []
    for start in range(0, len(images), CAM_BATCH):
        x = normalise(images[start : start + CAM_BATCH], classifier.spec.preprocess)
        maps = logits_and_cams(model, x, layer).maps
        for heatmap, mask in zip(maps, masks[start : start + CAM_BATCH], strict=True):
            share = energy_inside(heatmap, mask)
            shares.append(np.nan if share is None else share)
    return np.asarray(shares)


def _auc_row(report: Any) -> dict[str, Any]:
    overall = report.overall
    return {
        "macro_auc": overall.macro_auc.model_dump(),
        "per_class_auc": {c.label: c.auc.model_dump() for c in overall.per_class},
        "accuracy": overall.accuracy.model_dump(),
    }


def audit_classifier(
    classifier: Bundle,
    lungs: Bundle,
    items: Sequence[tuple[Sample, str, str]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the audit on labelled ``(sample, label, patient group)`` items; JSON-ready numbers.

    Returns ``{"variants": {view: {macro_auc, per_class_auc, accuracy}}, "cam_in_lungs": {...},
    "n_images", "n_patients", "dilation_fraction"}``; estimates are ``Estimate`` dicts.
    """
    spec = classifier.spec
    data = labelled_images(items, spec.labels, spec.preprocess)
    masks = lung_masks(lungs, items, spec.preprocess.input_size)
    model = classifier.build_model()
    rule = DecisionRule.from_operating_points(spec.operating_points)
    variants = {}
    for name, images in masked_variants(data.images, masks).items():
        probs = apply_temperature(predict_logits(model, images, spec.preprocess).numpy(), spec.temperature)
        report = evaluate_classifier(
            data.targets.numpy(),
            probs,
            spec.labels,
            np.asarray(data.patient_ids),
            decision=rule,
            n_boot=n_boot,
            seed=seed,
        )
        variants[name] = _auc_row(report)
    shares = cam_energy_in_lungs(classifier, model, data.images, masks)
    targets = data.targets.numpy()
    by_class = {
        label: float(np.nanmean(shares[targets == k]))
        for k, label in enumerate(spec.labels)
        if (targets == k).any()
    }
    return {
        "variants": variants,
        "cam_in_lungs": {
            "mean": float(np.nanmean(shares)),
            "median": float(np.nanmedian(shares)),
            "share_of_images_below_half": float(np.nanmean(shares < 0.5)),
            "mean_by_true_class": by_class,
        },
        "n_images": len(items),
        "n_patients": len(set(data.patient_ids)),
        "dilation_fraction": DILATION_FRACTION,
        "lung_segmenter": f"{lungs.spec.name} {lungs.spec.version}",
    }


def _fmt(estimate: dict[str, Any]) -> str:
    e = Estimate.model_validate(estimate)
    if e.value is None:
        return "n/a"
    interval = f" [{e.low:.3f}, {e.high:.3f}]" if e.low is not None and e.high is not None else ""
    return f"{e.value:.3f}{interval}"


def audit_markdown(audit: dict[str, Any]) -> list[str]:
    """The audit as a model-card section (markdown lines)."""
    labels = list(next(iter(audit["variants"].values()))["per_class_auc"])
    head = ["view", "macro AUC", *[f"{label} AUC" for label in labels], "accuracy"]
    rows = [
        [
            name,
            _fmt(v["macro_auc"]),
            *[_fmt(v["per_class_auc"][label]) for label in labels],
            _fmt(v["accuracy"]),
        ]
        for name, v in audit["variants"].items()
    ]
    cam = audit["cam_in_lungs"]
    lines = [
        "## Shortcut audit (test split, 95% CI by bootstrap over patients)",
        "",
        f"{audit['n_images']} images, {audit['n_patients']} patient groups; lung fields from "
        f"`{audit['lung_segmenter']}`, dilated by {audit['dilation_fraction']:.0%} of the image side, "
        "filled with the image's mean grey.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *["| " + " | ".join(row) + " |" for row in rows],
        "",
        f"Grad-CAM mass of the top class inside the lung fields: mean {cam['mean']:.2f}, median "
        f"{cam['median']:.2f}; {cam['share_of_images_below_half']:.0%} of images have less than half "
        "of it inside the lungs. Mean by true class: "
        + ", ".join(f"{k} {v:.2f}" for k, v in cam["mean_by_true_class"].items())
        + ".",
        "",
        "Reading: an AUC well above 0.5 with the lungs masked out means the model separates the classes "
        "from outside the lungs (a shortcut, e.g. the source's markers, borders or patient size).",
        "",
    ]
    return lines
