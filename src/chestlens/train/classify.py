"""``chestlens train classify``: data, patient-level split, training, calibration, bundle, test report.

Steps (all outputs under ``cfg.out``):

1. read every sample of the configured sources (default: the sources whose labels are image-level
   diagnoses, not the segmentation sets that re-use their images);
2. load the split CSV (``cfg.splits``, or ``splits.csv`` from an earlier run of this folder) or make one:
   patients linked across ids, sources and near-duplicate pixels, stratified by source x class, seeded;
3. decode and cache every image at the input size;
4. train (:func:`chestlens.train.loop.train_classifier`), keep the best epoch by validation macro AUC;
5. on VALIDATION only: fit the calibration temperature and the operating point of the first class
   (default: COVID-19 at sensitivity 0.95);
6. write the bundle (``bundle/``), then evaluate it once on the TEST split (``test-report/``) and record
   the test numbers, labelled as such, in the bundle and its model card.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestlens.data.registry import load_samples
from chestlens.data.splits import SPLITS
from chestlens.data.tasks import get_task
from chestlens.data.tensors import labelled_images
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.bundle_eval import Predictions, evaluate_predictions, metrics_summary, predict
from chestlens.evaluate.calibration import apply_temperature, fit_temperature
from chestlens.evaluate.operating_point import choose_threshold
from chestlens.models.bundle import BundleSpec, PreprocessSpec
from chestlens.models.factory import create_model
from chestlens.models.registry import get_model_config
from chestlens.train import distributed
from chestlens.train.config import ClassifyConfig
from chestlens.train.engine import resolve_device
from chestlens.train.fp16 import fp16_check
from chestlens.train.loop import macro_auc, train_classifier
from chestlens.train.run import (
    BUNDLE_DIR,
    check_not_empty,
    finish_run,
    split_table,
    start_run,
    training_summary,
)

log = logging.getLogger(__name__)

#: Sources whose labels are image-level diagnoses. The segmentation sets (v7_lungs, generalblockchain,
#: infnet) re-use ieee8023/Hannover/MedSeg images and would add duplicates, so they are not defaults.
CLASSIFICATION_SOURCES = {
    "xray": ("ieee8023", "hannover", "kermany", "nih", "rsna", "folder", "manifest"),
    "ct": ("covidx_ct", "folder", "manifest"),
}


def _fp16_is_lossless(model: torch.nn.Module, state: dict[str, torch.Tensor], spec: BundleSpec, val) -> dict:
    """Does storing the weights as fp16 change anything measurable on validation?

    Lossless means: macro AUC moves by less than 0.001 and no validation image changes its argmax class.
    """
    targets = val.targets.numpy()
    return fp16_check(
        model,
        state,
        lambda: apply_temperature(predict(model, spec, val).logits, spec.temperature),
        lambda probs: macro_auc(targets, probs),
        lambda probs: probs.argmax(1),
        "macro_auc",
    )


def run_classification(
    cfg: ClassifyConfig, *, resume: bool = False, progress: bool = True, reproduce: str | None = None
) -> Path:
    """Train, calibrate, bundle and test one classifier; returns the bundle folder.

    Args:
        reproduce: the command line that reproduces this run, for the model card.
    """
    started, out, root = start_run(cfg)
    task = get_task(cfg.task)
    sources = cfg.sources or [
        name for name in CLASSIFICATION_SOURCES[task.modality] if name not in ("folder", "manifest")
    ]
    samples = [s for s in load_samples(root, sources) if s.modality == task.modality]
    if not samples:
        raise ChestlensInputError(
            root, f"no {task.modality} samples for task {task.name} in sources {sources}"
        )
    table = distributed.main_first(lambda: split_table(cfg, task.name, root, samples, out))
    labels = list(task.classes)
    model_cfg = get_model_config(cfg.model)
    spec = PreprocessSpec(
        input_size=cfg.input_size,
        in_chans=1,
        mean=[float(np.mean(model_cfg.mean))],
        std=[float(np.mean(model_cfg.std))],
    )
    log.info("decoding images at %d px", cfg.input_size)
    data = {split: labelled_images(table.labelled(samples, split), labels, spec) for split in SPLITS}
    check_not_empty(cfg, out, {split: len(images) for split, images in data.items()})
    model = create_model(cfg.model, len(labels), in_chans=1, weights=cfg.weights, drop_rate=cfg.drop_rate)
    outcome = train_classifier(
        model, cfg, spec, labels, data["train"], data["val"], out, resume=resume, progress=progress
    )
    if not distributed.placement().is_main:
        return out / BUNDLE_DIR  # under DDP rank 0 calibrates, evaluates and writes the bundle

    model.load_state_dict(outcome.best_state)
    device = resolve_device(cfg.device)
    provisional = BundleSpec(
        name=cfg.name,
        version=cfg.version,
        kind="classifier",
        task=task.name,
        architecture=cfg.model,
        labels=labels,
        preprocess=spec,
    )
    val_preds = predict(model, provisional, data["val"], device=device)
    temperature = fit_temperature(val_preds.logits, val_preds.targets)
    val_probs = apply_temperature(val_preds.logits, temperature)
    point = choose_threshold(val_preds.targets == 0, val_probs[:, 0], cfg.target_sensitivity)
    bundle_spec = provisional.model_copy(
        update={
            "temperature": temperature,
            "operating_points": [point.to_bundle(labels[0])],
            "training": training_summary(cfg, table, samples, outcome, started, device),
        }
    )
    model.cpu()
    fp16 = _fp16_is_lossless(model, outcome.best_state, bundle_spec, data["val"]) if cfg.fp16_bundle else None

    def evaluate(split: str, name: str, out_dir: Path) -> dict[str, Any]:
        preds = val_preds if split == "val" else predict(model, bundle_spec, data[split])
        return _evaluate(bundle_spec, preds, out_dir, name)

    has_test = len(data["test"]) > 0
    return finish_run(
        bundle_spec, outcome.best_state, out, evaluate, fp16=fp16, has_test=has_test, reproduce=reproduce
    )


def _evaluate(spec: BundleSpec, preds: Predictions, out_dir: Path, split: str) -> dict[str, Any]:
    report, _files = evaluate_predictions(
        spec, preds, out_dir, title=f"{spec.name} {spec.version}: {split} split", data_info={"split": split}
    )
    return metrics_summary(report, spec.labels)
