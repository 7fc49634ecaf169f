"""Shortcut audit of a classifier: does it look at the lungs, or at whatever else tells sources apart?

Three views of every test image, the lung fields found by a lung segmenter bundle:

* ``full image``: what the model normally sees;
* ``lungs masked out``: the (slightly dilated) lung fields replaced by the image's mean grey;
* ``lungs only``: everything outside the dilated lung fields replaced by the same grey.

A model that reads the lungs should fall towards chance (AUC 0.5) without them and keep most of its
AUC with them alone; a model that still separates the classes with the lungs masked out is using
something else (text markers, borders, patient size, the source's processing): a shortcut. Each view
gets the within-source AUC of every binary question (:mod:`chestlens.evaluate.within_source`: pairs
from one source only, which telling sources apart cannot earn) and the pooled AUCs (which include
between-source pairs). The audit also fits a linear source probe on the classifier's pooled features
of the full images (:mod:`chestlens.evaluate.source_probe`: how much of the source the features carry)
and reports where the Grad-CAM heatmap of the top class falls: its share of mass inside the lung
fields, overall and per true class. All AUCs carry 95% CIs by bootstrap over patients (the
evaluation's own machinery).

Images go through the classifier's own preprocessing (a lung crop or mask, CLAHE) with the lung masks
on its input grid (:func:`chestlens.data.tensors.decode_with_lungs`), so the masks match what it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from scipy import ndimage

from chestlens.data.records import Sample
from chestlens.data.tensors import CachedLungMasker, LabelledImages, decode_with_lungs
from chestlens.evaluate.bootstrap import Estimate
from chestlens.evaluate.calibration import apply_temperature
from chestlens.evaluate.classification import evaluate_classifier
from chestlens.evaluate.operating_point import DecisionRule
from chestlens.evaluate.source_probe import SourceProbe, pooled_features, source_probe
from chestlens.evaluate.within_source import WithinSourceAUC, strata_of, within_source_report
from chestlens.models.bundle import Bundle
from chestlens.models.inference import lung_masker, predict_logits
from chestlens.models.registry import get_model_config
from chestlens.models.spec import BundleSpec
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.rendering import macro_lines
from chestlens.strict import StrictModel

VARIANTS = ("full image", "lungs masked out", "lungs only")
#: The lung mask is dilated by this fraction of the image side before masking (covers the lung borders).
DILATION_FRACTION = 0.03
CAM_BATCH = 16


class ViewResult(StrictModel):
    """The classifier on one view of the images.

    Attributes:
        macro_auc, per_class_auc, accuracy: pooled over all images (AUCs include between-source pairs).
        within_source: each binary question's AUC over same-source pairs (empty in audits made before it
            was measured).
    """

    macro_auc: Estimate
    per_class_auc: dict[str, Estimate]
    accuracy: Estimate
    within_source: list[WithinSourceAUC] = Field(default_factory=list)


class CamInLungs(StrictModel):
    """Share of the top-class Grad-CAM mass inside the lung fields, in ``[0, 1]`` (None: no CAM mass)."""

    mean: float | None
    median: float | None
    share_of_images_below_half: float | None
    mean_by_true_class: dict[str, float | None]


class ShortcutAudit(StrictModel):
    """Result of :func:`audit_classifier` (stored in a bundle's ``metrics.shortcut_audit``).

    ``source_probe`` is None in audits made before it was measured.
    """

    variants: dict[str, ViewResult]
    cam_in_lungs: CamInLungs
    source_probe: SourceProbe | None = None
    n_images: int
    n_patients: int
    dilation_fraction: float
    lung_segmenter: str

    def within_source_by_view(self) -> dict[str, dict[str, Estimate]]:
        """``{view: {question: pooled within-source AUC}}`` (empty questions in audits made before them)."""
        return {name: {r.question: r.pooled for r in v.within_source} for name, v in self.variants.items()}


def images_with_lungs(
    items: Sequence[tuple[Sample, str, str]],
    labels: Sequence[str],
    spec: PreprocessSpec,
    lungs: Bundle,
    cache: Path | None = None,
) -> tuple[LabelledImages, np.ndarray]:
    """Decode ``(sample, label, patient group)`` items through the classifier preprocessing ``spec``
    (lung crop or mask and CLAHE where it asks) with their lung masks from the ``lungs`` segmenter bundle.

    Args:
        cache: ``.npz`` file keeping the lung masks between runs (:class:`CachedLungMasker`).

    Returns the labelled images ``(N, 1, S, S)`` and bool lung masks ``(N, S, S)`` on the same grid.
    """
    if not items:
        raise ValueError("no images to decode")
    masker = CachedLungMasker(lung_masker(lungs.build_model(), lungs.spec.preprocess), cache)
    images, masks = decode_with_lungs([Path(sample.path) for sample, _, _ in items], spec, masker)
    masker.save()
    targets = torch.tensor([list(labels).index(label) for _, label, _ in items], dtype=torch.long)
    return LabelledImages.of_items(items, images, targets), np.asarray(masks)


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
    from chestlens.explain.energy import energy_inside
    from chestlens.explain.gradients import logits_and_cams

    layer = get_model_config(classifier.spec.architecture).cam_layer
    shares = []
    for start in range(0, len(images), CAM_BATCH):
        x = normalise(images[start : start + CAM_BATCH], classifier.spec.preprocess)
        maps = logits_and_cams(model, x, layer).maps
        for heatmap, mask in zip(maps, masks[start : start + CAM_BATCH], strict=True):
            share = energy_inside(heatmap, mask)
            shares.append(np.nan if share is None else share)
    return np.asarray(shares)


def _view_result(
    model: torch.nn.Module,
    spec: BundleSpec,
    data: LabelledImages,
    images: torch.Tensor,
    n_boot: int,
    seed: int,
) -> ViewResult:
    """Pooled and within-source AUCs of the classifier on ``images`` ``(N, 1, S, S)``, a view of ``data``."""
    probs = apply_temperature(predict_logits(model, images, spec.preprocess).numpy(), spec.temperature)
    targets, patients = data.targets.numpy(), np.asarray(data.patient_ids)
    rule = DecisionRule.from_operating_points(spec.operating_points)
    overall = evaluate_classifier(
        targets, probs, spec.labels, patients, decision=rule, n_boot=n_boot, seed=seed
    ).overall
    strata = strata_of(data.sources, data.views or None)
    return ViewResult(
        macro_auc=overall.macro_auc,
        per_class_auc={c.label: c.auc for c in overall.per_class},
        accuracy=overall.accuracy,
        within_source=within_source_report(
            targets, probs, spec.labels, strata, patients, n_boot=n_boot, seed=seed
        ),
    )


def _mean(values: np.ndarray) -> float | None:
    """Mean of the finite values of ``values`` ``(n,)``; None when there is none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _cam_summary(shares: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> CamInLungs:
    """Summary of per-image CAM shares ``(N,)`` (NaN: no CAM mass), overall and per true class."""
    finite = shares[np.isfinite(shares)]
    return CamInLungs(
        mean=_mean(shares),
        median=float(np.median(finite)) if finite.size else None,
        share_of_images_below_half=_mean((finite < 0.5).astype(float)),
        mean_by_true_class={
            label: _mean(shares[targets == k]) for k, label in enumerate(labels) if (targets == k).any()
        },
    )


def audit_classifier(
    classifier: Bundle,
    lungs: Bundle,
    items: Sequence[tuple[Sample, str, str]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the audit on labelled ``(sample, label, patient group)`` items.

    Returns a JSON-ready :class:`ShortcutAudit` dump: ``variants`` (per view: pooled ``macro_auc``,
    ``per_class_auc``, ``accuracy`` and ``within_source``), ``cam_in_lungs``, ``source_probe``,
    ``n_images``, ``n_patients``, ``dilation_fraction``, ``lung_segmenter``.
    """
    spec = classifier.spec
    data, masks = images_with_lungs(items, spec.labels, spec.preprocess, lungs)
    model = classifier.build_model()
    variants = {
        name: _view_result(model, spec, data, images, n_boot, seed)
        for name, images in masked_variants(data.images, masks).items()
    }
    features = pooled_features(model, data.images, spec.preprocess)
    audit = ShortcutAudit(
        variants=variants,
        cam_in_lungs=_cam_summary(
            cam_energy_in_lungs(classifier, model, data.images, masks), data.targets.numpy(), spec.labels
        ),
        source_probe=source_probe(features, data.sources, data.patient_ids, seed=seed),
        n_images=len(data),
        n_patients=len(set(data.patient_ids)),
        dilation_fraction=DILATION_FRACTION,
        lung_segmenter=f"{lungs.spec.name} {lungs.spec.version}",
    )
    return audit.model_dump(mode="json")


def audit_markdown(audit: Mapping[str, Any]) -> list[str]:
    """The audit (a :class:`ShortcutAudit` dump, also one made before the within-source AUCs and the
    source probe) as a model-card section (markdown lines, template ``shortcut_audit.md``): within-source
    AUCs by view first, then the source probe, the pooled AUCs by view and the CAM mass in the lungs."""
    return macro_lines("shortcut_audit.md", "audit", ShortcutAudit.model_validate(audit))
