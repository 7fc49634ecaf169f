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

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestlens.data.records import Sample
from chestlens.data.registry import load_samples
from chestlens.data.splits import SPLITS, SplitTable
from chestlens.data.tasks import get_task
from chestlens.data.tensors import LungMasker, labelled_images
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.bundle_eval import Predictions, evaluate_predictions, metrics_summary, predict
from chestlens.evaluate.calibration import apply_temperature, fit_temperature
from chestlens.evaluate.operating_point import choose_threshold
from chestlens.models.bundle import load_bundle
from chestlens.models.device import resolve_device
from chestlens.models.factory import create_model
from chestlens.models.inference import lung_masker
from chestlens.models.registry import get_model_config
from chestlens.models.spec import BundleSpec
from chestlens.preprocess.lung_roi import needs_lungs
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.train import distributed
from chestlens.train.config import ClassifyConfig
from chestlens.train.fp16 import fp16_check, use_stored_weights
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
    "xray": (
        "ieee8023",
        "radiopaedia",
        "actualmed",
        "figure1",
        "hannover",
        "kermany",
        "nih",
        "rsna",
        "folder",
        "manifest",
    ),
    "ct": ("covidx_ct", "folder", "manifest"),
}


def classification_samples(
    cfg: ClassifyConfig, root: Path, sources: list[str], modality: str
) -> list[Sample]:
    """The run's samples: the sources' images of the task's modality, without ``cfg.exclude_views``."""
    excluded = {v.lower() for v in cfg.exclude_views}
    samples = [
        s
        for s in load_samples(root, sources)
        if s.modality == modality and (s.view or "").strip().lower() not in excluded
    ]
    if not samples:
        raise ChestlensInputError(root, f"no {modality} samples for task {cfg.task} in sources {sources}")
    return samples if cfg.max_per_source is None else cap_per_source(samples, cfg.max_per_source, cfg.seed)


def cap_per_source(samples: list[Sample], cap: int, seed: int) -> list[Sample]:
    """At most about ``cap`` images per source: whole patients, in a seeded random order, until the
    cap is reached (a compute budget for recipe comparisons; every recipe gets the same images)."""
    rng = np.random.default_rng(seed)
    kept: list[Sample] = []
    for source in sorted({s.source for s in samples}):
        mine = [s for s in samples if s.source == source]
        patients = sorted({s.patient_id for s in mine})
        chosen: set[str] = set()
        count = 0
        for index in rng.permutation(len(patients)):
            if count >= cap:
                break
            chosen.add(patients[index])
            count += sum(s.patient_id == patients[index] for s in mine)
        kept.extend(s for s in mine if s.patient_id in chosen)
    return kept


def classifier_preprocess(cfg: ClassifyConfig) -> PreprocessSpec:
    """The bundle's preprocessing for this run: input size, the model's normalisation, lung recipe."""
    model_cfg = get_model_config(cfg.model)
    return PreprocessSpec(
        input_size=cfg.input_size,
        in_chans=1,
        mean=[float(np.mean(model_cfg.mean))],
        std=[float(np.mean(model_cfg.std))],
        lung_roi=cfg.lung_roi,
        lung_margin=cfg.lung_margin,
        equalise=cfg.equalise,
    )


def lung_masker_for(cfg: ClassifyConfig, spec: PreprocessSpec) -> LungMasker | None:
    """The lung segmenter bundle ``cfg.lungs`` as a masker, when the preprocessing needs lungs."""
    if not needs_lungs(spec):
        return None
    lungs = load_bundle(cfg.lungs)
    return lung_masker(lungs.build_model(), lungs.spec.preprocess)


def provisional_spec(cfg: ClassifyConfig, spec: PreprocessSpec, labels: list[str]) -> BundleSpec:
    """The bundle spec of a trained classifier before calibration, thresholds and metrics."""
    return BundleSpec(
        name=cfg.name,
        version=cfg.version,
        kind="classifier",
        task=cfg.task,
        architecture=cfg.model,
        labels=labels,
        preprocess=spec,
    )


def leave_sources_out(table: SplitTable, sources: list[str]) -> SplitTable:
    """Leave-one-source-out split: every image of ``sources`` is test; nothing else is.

    The other sources' test images move to training. Images of other sources whose patient group also
    appears in a left-out source are dropped, so no left-out patient is seen in training.
    """
    unknown = sorted(set(sources) - {r.source for r in table.rows})
    if unknown:
        raise ChestlensInputError(None, f"--leave-out names sources with no image here: {', '.join(unknown)}")
    held = {r.group for r in table.rows if r.source in sources}
    rows = tuple(
        dataclasses.replace(
            r, split="test" if r.source in sources else ("train" if r.split == "test" else r.split)
        )
        for r in table.rows
        if r.source in sources or r.group not in held
    )
    return dataclasses.replace(table, rows=rows)


def _recipe_grid(cfg: ClassifyConfig) -> dict[str, Any]:
    """``{"recipe_grid": ...}`` for the bundle when the config names the grid it was chosen from."""
    from chestlens.train.crossval import read_recipe_grid

    return {"recipe_grid": read_recipe_grid(Path(cfg.recipe_grid))} if cfg.recipe_grid else {}


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
    samples = classification_samples(cfg, root, sources, task.modality)
    table = distributed.main_first(lambda: split_table(cfg, task.name, root, samples, out))
    if cfg.leave_out:
        table = leave_sources_out(table, cfg.leave_out)
    labels = list(task.classes)
    spec = classifier_preprocess(cfg)
    masker = lung_masker_for(cfg, spec)
    log.info("decoding images at %d px", cfg.input_size)
    data = {split: labelled_images(table.labelled(samples, split), labels, spec, masker) for split in SPLITS}
    check_not_empty(cfg, out, {split: len(images) for split, images in data.items()})
    model = create_model(cfg.model, len(labels), in_chans=1, weights=cfg.weights, drop_rate=cfg.drop_rate)
    outcome = train_classifier(
        model, cfg, spec, labels, data["train"], data["val"], out, resume=resume, progress=progress
    )
    if not distributed.placement().is_main:
        return out / BUNDLE_DIR  # under DDP rank 0 calibrates, evaluates and writes the bundle

    model.load_state_dict(outcome.best_state)
    device = resolve_device(cfg.device)
    provisional = provisional_spec(cfg, spec, labels)
    val_preds = predict(model, provisional, data["val"], device=device)
    temperature = fit_temperature(val_preds.logits, val_preds.targets)
    val_probs = apply_temperature(val_preds.logits, temperature)
    point = choose_threshold(val_preds.targets == 0, val_probs[:, 0], cfg.target_sensitivity)
    bundle_spec = provisional.model_copy(
        update={
            "temperature": temperature,
            "operating_points": [point.to_threshold(labels[0])],
            "training": training_summary(cfg, table, samples, outcome, started, device).model_copy(
                update=_recipe_grid(cfg)
            ),
        }
    )
    model.cpu()
    fp16 = _fp16_is_lossless(model, outcome.best_state, bundle_spec, data["val"]) if cfg.fp16_bundle else None
    use_stored_weights(model, outcome.best_state, fp16)

    def evaluate(split: str, name: str, out_dir: Path) -> dict[str, Any]:
        preds = val_preds if split == "val" else predict(model, bundle_spec, data[split])
        return _evaluate(bundle_spec, preds, out_dir, name)

    has_test = len(data["test"]) > 0
    return finish_run(
        bundle_spec,
        outcome.best_state,
        out,
        evaluate,
        fp16=fp16,
        has_test=has_test,
        reproduce=reproduce,
        graph_images=data["val"].images.numpy() if cfg.graph else None,
    )


def _evaluate(spec: BundleSpec, preds: Predictions, out_dir: Path, split: str) -> dict[str, Any]:
    report, _files = evaluate_predictions(
        spec, preds, out_dir, title=f"{spec.name} {spec.version}: {split} split", data_info={"split": split}
    )
    return metrics_summary(report, spec.labels)
