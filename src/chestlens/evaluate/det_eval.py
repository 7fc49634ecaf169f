"""Run a detector bundle over images with lesion masks and write its COCO AP report.

Shared by ``chestlens train detect`` (validation score, test report) and ``chestlens evaluate``. The true
instances are the connected components of each class of the masks
(:func:`chestlens.data.instances.label_map_instances`), as in training; predictions are the detector's
instances on the bundle's ``S x S`` input grid; both are scored by
:func:`chestlens.evaluate.detection.evaluate_detections` (mask and box AP@0.5, AP@0.75 and mAP, CIs over
patients).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from chestlens.atomic import write_text_atomic
from chestlens.data.instances import DEFAULT_MIN_AREA_PX, label_map_instances
from chestlens.data.records import Sample
from chestlens.data.seg_tensors import segmented_images
from chestlens.data.tensors import LabelledImages
from chestlens.evaluate.detection import DetectionReport, evaluate_detections
from chestlens.evaluate.page import REPORT_JSON
from chestlens.models.bundle import Bundle
from chestlens.models.detection import MaskRCNNDetector, predict_instances
from chestlens.models.spec import BundleSpec
from chestlens.rendering import render

#: The detection report's Markdown file.
REPORT_MD = "report.md"


def detection_report(
    detector: MaskRCNNDetector,
    data: LabelledImages,
    classes: Sequence[str],
    *,
    min_area_px: int,
    device: torch.device | str = "cpu",
    n_boot: int = 1000,
    seed: int = 0,
) -> DetectionReport:
    """COCO mask and box AP of ``detector`` on ``data`` (label maps ``(N, S, S)``; 95% CI over patients
    with ``n_boot`` > 0); true instances under ``min_area_px`` pixels are not counted."""
    size = data.images.shape[-1]
    return evaluate_detections(
        [label_map_instances(t.numpy(), classes, min_area_px) for t in data.targets],
        predict_instances(detector, data.images, classes, device),
        [(size, size)] * len(data),
        classes,
        patient_ids=data.patient_ids,
        max_dets=int(detector.roi_heads.detections_per_img),
        n_boot=n_boot,
        seed=seed,
    )


def detection_summary(report: DetectionReport) -> dict[str, Any]:
    """Headline numbers (the bundle's ``metrics``, ``chestlens evaluate --json``): mask and box AP,
    overall and per class."""
    return {
        "n_images": report.n_images,
        "n_patients": report.n_patients,
        "segm": report.segm.model_dump() if report.segm else None,
        "bbox": report.bbox.model_dump() if report.bbox else None,
        "per_class": {c.label: {"segm": c.segm.model_dump(), "n_gt": c.n_gt} for c in report.per_class},
        "warnings": list(report.warnings),
    }


def write_detection_report(
    spec: BundleSpec, report: DetectionReport, out_dir: Path, split: str
) -> dict[str, Path]:
    """Write ``report.json`` and ``report.md`` of ``report`` into ``out_dir``; returns their paths."""
    files = {"json": Path(out_dir) / REPORT_JSON, "md": Path(out_dir) / REPORT_MD}
    write_text_atomic(files["json"], report.model_dump_json(indent=2))
    write_text_atomic(files["md"], render("detection_report.md", spec=spec, report=report, split=split))
    return files


def instance_min_area(spec: BundleSpec) -> int:
    """The smallest true instance (pixels) the detector was trained and scored with."""
    rule = spec.training.instances
    return DEFAULT_MIN_AREA_PX if rule is None else rule.min_area_px


def evaluate_detector_items(
    bundle: Bundle,
    items: Sequence[tuple[Sample, str, str]],
    out_dir: Path,
    split: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Evaluate a detector bundle on ``(sample, label, patient group)`` items with lesion masks for its
    task (``split`` names them in the report); returns the headline numbers (:func:`detection_summary`)
    and the report files."""
    spec = bundle.spec
    data = segmented_images(items, spec.task, spec.preprocess)
    report = detection_report(
        bundle.build_model(),
        data,
        spec.labels[1:],
        min_area_px=instance_min_area(spec),
        n_boot=n_boot,
        seed=seed,
    )
    return detection_summary(report), write_detection_report(spec, report, out_dir, split)
