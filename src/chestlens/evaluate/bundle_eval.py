"""Run a classifier bundle over labelled samples and produce the clinical evaluation report.

Shared by ``chestlens train classify`` (validation calibration, test report) and ``chestlens evaluate``
(:mod:`chestlens.evaluate.kinds`), which also takes the cases to evaluate from here
(:func:`evaluation_items`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.data.records import Sample
from chestlens.data.tensors import LabelledImages, labelled_images
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.bootstrap import Estimate
from chestlens.evaluate.calibration import apply_temperature
from chestlens.evaluate.classification import evaluate_classifier
from chestlens.evaluate.operating_point import DecisionRule
from chestlens.evaluate.plots import save_figures
from chestlens.evaluate.report import write_report
from chestlens.evaluate.results import ClassificationReport
from chestlens.evaluate.within_source import WITHIN_SOURCE_LIST, headline_score
from chestlens.models.bundle import Bundle
from chestlens.models.inference import masker_for, predict_logits
from chestlens.models.spec import BundleSpec


@dataclass(frozen=True, slots=True)
class Predictions:
    """Model outputs over a labelled set. Arrays have length N; ``logits`` is ``(N, C)``; ``views`` holds
    each image's projection (None when unknown)."""

    logits: np.ndarray
    targets: np.ndarray
    patient_ids: np.ndarray
    sources: np.ndarray
    uids: np.ndarray
    views: np.ndarray


def predict(
    model: torch.nn.Module, spec: BundleSpec, data: LabelledImages, *, device: str | torch.device = "cpu"
) -> Predictions:
    """Logits of ``model`` on cached, labelled images."""
    logits = predict_logits(model, data.images, spec.preprocess, device=device).numpy()
    return Predictions(
        logits=logits,
        targets=data.targets.numpy(),
        patient_ids=np.asarray(data.patient_ids),
        sources=np.asarray(data.sources),
        uids=np.asarray(data.uids),
        views=np.asarray(data.views or (None,) * len(data), dtype=object),
    )


def evaluate_predictions(
    spec: BundleSpec,
    preds: Predictions,
    out_dir: Path,
    *,
    title: str,
    data_info: dict[str, Any],
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[ClassificationReport, dict[str, Path]]:
    """Calibrate with the bundle's temperature, decide at its operating points, and write the report.

    Returns the report and the written files (``json``, ``html`` and the figure PNGs).
    """
    probs = apply_temperature(preds.logits, spec.temperature)
    rule = DecisionRule.from_operating_points(spec.operating_points)
    report = evaluate_classifier(
        preds.targets,
        probs,
        spec.labels,
        preds.patient_ids,
        preds.sources,
        views=preds.views,
        decision=rule,
        n_boot=n_boot,
        seed=seed,
        temperature=spec.temperature,
    )
    figures = save_figures(report, preds.targets, probs, out_dir)
    model_info = {
        "name": spec.name,
        "version": spec.version,
        "architecture": spec.architecture,
        "task": spec.task,
        "input_size": spec.preprocess.input_size,
        "temperature": spec.temperature,
        "disclaimer": RESEARCH_USE_DISCLAIMER,
    }
    files = write_report(report, figures, out_dir, title=title, model_info=model_info, data_info=data_info)
    return report, {**files, **figures}


def triple(estimate: Estimate) -> list[float | None]:
    """``[value, low, high]`` of an estimate, as stored in a bundle's ``metrics``."""
    return [estimate.value, estimate.low, estimate.high]


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def metrics_summary(report: ClassificationReport, labels: Sequence[str]) -> dict[str, Any]:
    """The headline numbers of a report for a bundle's ``metrics`` field, within-source AUCs first.

    ``within_source`` holds :class:`~chestlens.evaluate.within_source.WithinSourceAUC` dumps (read back
    with :data:`WITHIN_SOURCE_LIST`), ``within_source_score`` the mean of its headline questions (what
    training selects on; None when no source holds both sides); the pooled numbers (``macro_auc``,
    ``per_class`` AUCs, which count between-source pairs too) are ``[value, low, high]`` triples.
    """
    overall = report.overall
    summary: dict[str, Any] = {
        "within_source": WITHIN_SOURCE_LIST.dump_python(report.within_source, mode="json"),
        "within_source_score": _finite_or_none(headline_score(report.within_source, labels)),
        "pooled_auc_scope": report.pooled_auc_scope,
        "n_images": overall.n_images,
        "n_patients": overall.n_patients,
        "macro_auc": triple(overall.macro_auc),
        "accuracy": triple(overall.accuracy),
        "per_class": {
            label: {
                "auc": triple(cm.auc),
                "sensitivity": triple(cm.sensitivity),
                "specificity": triple(cm.specificity),
            }
            for label, cm in zip(labels, overall.per_class, strict=True)
        },
        "ece": triple(overall.calibration.ece),
        "operating_points": [point.model_dump(mode="json") for point in overall.operating_points],
        "warnings": list(report.warnings),
    }
    return summary


def _items_from_folder(data: Path, task_name: str) -> list[tuple[Sample, str, str]]:
    from chestlens.data.linking import link_samples
    from chestlens.data.registry import load_samples
    from chestlens.data.tasks import get_labelling

    task = get_labelling(task_name)
    samples = [s for s in load_samples(data) if s.modality == task.modality]
    groups = link_samples(samples).group_of
    return [(s, label, groups[s.uid]) for s in samples if (label := task.mapping(s)) is not None]


def _items_from_split(splits: Path, split: str, root: Path | None) -> list[tuple[Sample, str, str]]:
    from chestlens.data.registry import load_samples
    from chestlens.data.root import DATA_ENV, data_root
    from chestlens.data.splits import load_splits

    base = data_root(root)
    if base is None:
        raise ChestlensInputError(splits, f"no data root for this split: pass --root or set {DATA_ENV}")
    samples = load_samples(base)
    return load_splits(splits, samples).labelled(samples, split)


def evaluation_items(
    spec: BundleSpec,
    *,
    splits: Path | None = None,
    split: str = "test",
    data: Path | None = None,
    root: Path | None = None,
) -> tuple[list[tuple[Sample, str, str]], dict[str, Any]]:
    """The cases to evaluate a bundle on: one split of a split CSV, or every case of a data folder that
    has a label (classifier) or masks (segmenter) for the bundle's task.

    Returns ``(sample, label, patient group)`` items and what they are, for the report.
    """
    if data is not None:
        items = _items_from_folder(data, spec.task)
        data_info = {"data": str(data), "cases": "every case with a label for the task is a test case"}
    elif splits is not None:
        items = _items_from_split(splits, split, root)
        data_info = {"splits": str(splits), "split": split}
    else:
        raise ChestlensInputError(None, "nothing to evaluate: give a split CSV or a data folder")
    if not items:
        raise ChestlensInputError(
            data if data is not None else splits, f"no labelled cases for task {spec.task}"
        )
    return items, data_info | {"n_images": len(items), "sources": sorted({s.source for s, _, _ in items})}


def evaluate_classifier_items(
    bundle: Bundle,
    items: Sequence[tuple[Sample, str, str]],
    out_dir: Path,
    title: str,
    data_info: dict[str, Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Evaluate a classifier bundle on ``(sample, label, patient group)`` items (from
    :func:`evaluation_items`); returns the headline numbers (:func:`metrics_summary`) and the report
    files."""
    spec = bundle.spec
    unknown = sorted({label for _, label, _ in items} - set(spec.labels))
    if unknown:
        raise ChestlensInputError(
            data_info.get("data") or data_info.get("splits"),
            f"labels {unknown} are not among the model's labels {spec.labels}",
        )
    images = labelled_images(items, spec.labels, spec.preprocess, masker_for(spec))
    preds = predict(bundle.build_model(), spec, images)
    report, files = evaluate_predictions(
        spec, preds, out_dir, title=title, data_info=data_info, n_boot=n_boot, seed=seed
    )
    return metrics_summary(report, spec.labels), files
