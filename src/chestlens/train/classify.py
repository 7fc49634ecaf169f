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
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestlens.data.hashing import default_cache_path
from chestlens.data.make_split import build_splits
from chestlens.data.records import Sample
from chestlens.data.registry import load_samples
from chestlens.data.root import DATA_ENV, data_root
from chestlens.data.splits import SPLITS, SplitTable, load_splits, save_splits
from chestlens.data.summary import summarize
from chestlens.data.tasks import get_task
from chestlens.data.tensors import LabelledImages, labelled_images
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.bundle_eval import Predictions, evaluate_predictions, metrics_summary, predict
from chestlens.evaluate.calibration import apply_temperature, fit_temperature
from chestlens.evaluate.model_card import write_model_card
from chestlens.evaluate.operating_point import choose_threshold
from chestlens.evaluate.report import REPORT_JSON
from chestlens.models.bundle import BundleSpec, PreprocessSpec, save_bundle
from chestlens.models.factory import create_model
from chestlens.models.registry import get_model_config
from chestlens.train.config import ClassifyConfig
from chestlens.train.loop import macro_auc, resolve_device, train_classifier

log = logging.getLogger(__name__)

#: Sources whose labels are image-level diagnoses. The segmentation sets (v7_lungs, generalblockchain,
#: infnet) re-use ieee8023/Hannover/MedSeg images and would add duplicates, so they are not defaults.
CLASSIFICATION_SOURCES = {
    "xray": ("ieee8023", "hannover", "kermany", "nih", "rsna", "folder", "manifest"),
    "ct": ("covidx_ct", "folder", "manifest"),
}
SPLIT_FILE = "splits.csv"
BUNDLE_DIR = "bundle"
TEST_REPORT_DIR = "test-report"


def _root(cfg: ClassifyConfig) -> Path:
    root = data_root(cfg.data_root)
    if root is None or not root.is_dir():
        raise ChestlensInputError(root, f"no data root: pass data_root=... or set {DATA_ENV}")
    return root


def _split_table(cfg: ClassifyConfig, root: Path, samples: list[Sample], out: Path) -> SplitTable:
    given = Path(cfg.splits) if cfg.splits else out / SPLIT_FILE
    if given.is_file():
        log.info("using split %s", given)
        return load_splits(given, samples)
    task = get_task(cfg.task)
    sources = sorted({s.source for s in samples})
    table = build_splits(
        root,
        task.name,
        sources,
        seed=cfg.split_seed,
        fractions=cfg.split_fractions,
        cache=default_cache_path(),
    ).table
    save_splits(table, out / SPLIT_FILE)
    return table


def _split_images(
    table: SplitTable, samples: list[Sample], split: str, labels: list[str], spec: PreprocessSpec
) -> LabelledImages:
    by_uid = {s.uid: s for s in samples}
    rows = [r for r in table.rows if r.split == split and r.uid in by_uid]
    return labelled_images([(by_uid[r.uid], r.label, r.group) for r in rows], labels, spec)


def _data_summary(table: SplitTable, samples: list[Sample]) -> dict[str, Any]:
    counts = Counter((r.source, r.label, r.split) for r in table.rows)
    per: dict[str, dict[str, dict[str, int]]] = {}
    for (source, label, split), n in sorted(counts.items()):
        per.setdefault(source, {}).setdefault(label, dict.fromkeys(SPLITS, 0))[split] = n
    return {
        "images_per_source_class_split": per,
        "patients_per_split": {s: len({r.group for r in table.rows if r.split == s}) for s in SPLITS},
        "split_seed": table.meta.seed,
        "excluded_per_source": table.meta.excluded,
        "confounder_warnings": summarize(samples, table=table).warnings,
    }


def _fp16_is_lossless(model: torch.nn.Module, state: dict[str, torch.Tensor], spec: BundleSpec, val) -> dict:
    """Does storing the weights as fp16 change anything measurable on validation?

    Lossless means: macro AUC moves by less than 0.001 and no validation image changes its argmax class.
    """
    half = {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(half)
    p16 = apply_temperature(predict(model, spec, val).logits, spec.temperature)
    model.load_state_dict(state)
    p32 = apply_temperature(predict(model, spec, val).logits, spec.temperature)
    targets = val.targets.numpy()
    auc_change = abs(macro_auc(targets, p16) - macro_auc(targets, p32))
    changed = int((p16.argmax(1) != p32.argmax(1)).sum())
    return {
        "max_probability_change": float(np.abs(p16 - p32).max()) if len(p32) else 0.0,
        "macro_auc_change": auc_change,
        "decisions_changed": changed,
        "lossless": auc_change < 1e-3 and changed == 0,
    }


def run_classification(
    cfg: ClassifyConfig, *, resume: bool = False, progress: bool = True, reproduce: str | None = None
) -> Path:
    """Train, calibrate, bundle and test one classifier; returns the bundle folder.

    Args:
        reproduce: the command line that reproduces this run, for the model card.
    """
    started = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    root = _root(cfg)
    task = get_task(cfg.task)
    sources = cfg.sources or [
        name for name in CLASSIFICATION_SOURCES[task.modality] if name not in ("folder", "manifest")
    ]
    samples = [s for s in load_samples(root, sources) if s.modality == task.modality]
    if not samples:
        raise ChestlensInputError(
            root, f"no {task.modality} samples for task {task.name} in sources {sources}"
        )
    table = _split_table(cfg, root, samples, out)
    labels = list(task.classes)
    model_cfg = get_model_config(cfg.model)
    spec = PreprocessSpec(
        input_size=cfg.input_size,
        in_chans=1,
        mean=[float(np.mean(model_cfg.mean))],
        std=[float(np.mean(model_cfg.std))],
    )
    log.info("decoding images at %d px", cfg.input_size)
    data = {split: _split_images(table, samples, split, labels, spec) for split in SPLITS}
    for split in ("train", "val"):
        if len(data[split]) == 0:
            raise ChestlensInputError(cfg.splits or out / SPLIT_FILE, f"the {split} split is empty")
    model = create_model(cfg.model, len(labels), in_chans=1, weights=cfg.weights, drop_rate=cfg.drop_rate)
    outcome = train_classifier(
        model, cfg, spec, labels, data["train"], data["val"], out, resume=resume, progress=progress
    )

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
            "training": {
                "config": cfg.model_dump(mode="json"),
                "data": _data_summary(table, samples),
                "history": outcome.history,
                "best_epoch": outcome.best_epoch,
                "stopped_early": outcome.stopped_early,
                "train_seconds": round(time.perf_counter() - started, 1),
                "device": str(device),
                "threads": torch.get_num_threads(),
            },
        }
    )
    model.cpu()
    fp16 = _fp16_is_lossless(model, outcome.best_state, bundle_spec, data["val"]) if cfg.fp16_bundle else None
    bundle_spec.training["fp16_check"] = fp16
    validation = _evaluate(bundle_spec, val_preds, out / "validation-report", "validation")
    test_summary = None
    if len(data["test"]):
        test_preds = predict(model, bundle_spec, data["test"])
        test_summary = _evaluate(bundle_spec, test_preds, out / TEST_REPORT_DIR, "test")
    bundle_spec.metrics.update({"validation": validation, "test": test_summary})
    lossless = bool(fp16 and fp16["lossless"])
    bundle = save_bundle(bundle_spec, outcome.best_state, out / BUNDLE_DIR, fp16=lossless)
    if test_summary is not None:
        confounders = bundle_spec.training["data"]["confounder_warnings"]
        write_model_card(
            bundle, out / TEST_REPORT_DIR / REPORT_JSON, confounders=confounders, reproduce=reproduce
        )
    return bundle


def _evaluate(spec: BundleSpec, preds: Predictions, out_dir: Path, split: str) -> dict[str, Any]:
    report, _files = evaluate_predictions(
        spec, preds, out_dir, title=f"{spec.name} {spec.version}: {split} split", data_info={"split": split}
    )
    return metrics_summary(report, spec.labels)
