"""Write a segmenter's evaluation as ``report.json`` and one self-contained ``report.html``, in the style of
the classifier report (:mod:`chestlens.evaluate.report`): disclaimer, warnings, settings, per-class
metrics with patient-bootstrap CIs and empty-mask case counts, the per-image Dice histogram, the worst
cases' contours, per-source tables, then the model, the data and the definitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chestlens.evaluate.page import Document, document_fields, page, write_document
from chestlens.evaluate.segmentation import SegmentationReport
from chestlens.strict import StrictModel

DEFINITIONS = {
    "Dice": "2 TP / (2 TP + FP + FN) per image and class; mean over images with a non-empty target",
    "IoU": "TP / (TP + FP + FN) per image and class; mean over images with a non-empty target",
    "sensitivity": "TP / (TP + FN) per image; mean over images with a non-empty target",
    "precision": "TP / (TP + FP) per image; mean over images where the prediction is not empty",
    "Dice, all images": "mean Dice over every image: empty target and prediction 1, empty target with a "
    "prediction 0 (the SIIM pneumothorax metric)",
    "pooled Dice": "Dice of the pixel counts summed over all images",
    "cases": "per image and class: true negative (both empty), false positive (target empty), false "
    "negative (prediction empty), true positive (both non-empty)",
    "CI": "percentile interval of a bootstrap over patients (a patient's images are resampled together)",
}


class ImageScore(StrictModel):
    """One image of the evaluation: its Dice per foreground class (empty-mask policy applied)."""

    uid: str
    patient_id: str
    source: str
    dice: dict[str, float]


class SegmentationDocument(Document):
    """Content of ``report.json`` of a segmenter."""

    decision: str
    metrics: SegmentationReport
    per_source: dict[str, SegmentationReport]
    per_image: list[ImageScore]


def render_segmentation_html(document: SegmentationDocument, figures: Mapping[str, Path]) -> str:
    """The self-contained HTML page of ``document`` (template ``seg_report.html``); ``figures`` PNG files
    are embedded as data URIs."""
    r = document.metrics
    settings = {"decision rule": document.decision, "empty-mask policy": r.empty_mask_policy}
    return page("seg_report.html", document, r, settings, DEFINITIONS, figures, r=r)


def write_segmentation_report(
    report: SegmentationReport,
    per_source: Mapping[str, SegmentationReport],
    per_image: Sequence[ImageScore],
    figures: Mapping[str, Path],
    out_dir: Path,
    *,
    title: str,
    decision: str,
    model_info: Mapping[str, Any],
    data_info: Mapping[str, Any],
) -> dict[str, Path]:
    """Write ``report.json`` (a :class:`SegmentationDocument`) and ``report.html`` atomically.

    Returns:
        ``{"json": path, "html": path}``.
    """
    document = SegmentationDocument(
        **document_fields(title, model_info, data_info, figures, out_dir),
        disclaimer=report.disclaimer,
        decision=decision,
        metrics=report,
        per_source=dict(per_source),
        per_image=list(per_image),
    )
    return write_document(document, render_segmentation_html(document, figures), out_dir)
