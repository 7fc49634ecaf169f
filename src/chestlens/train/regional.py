"""``chestlens train regional``: COVID-CT-Mask-Net style slice classification from a detector's regions.

A trained lesion detector (a ``kind="detector"`` bundle, e.g. from ``chestlens train detect``) is frozen;
every CT slice goes through it once (windowed and resized by the detector's own ``PreprocessSpec``), and
its top ``k`` regions (box, score, class, RoI feature; :func:`chestlens.models.detection.
detections_with_features` with the score threshold at 0 so weak regions count, as COVID-CT-Mask-Net
does) are cached. A :class:`~chestlens.models.regional.RegionalClassifier` then learns "infection present"
from the slice labels of the labelled series (COVID-CT-MD; :attr:`RegionalConfig.patients` picks some).

Split: with series from several patients, whole patients go to train, validation or test. When the data
hold one patient only (``configs/regional_ct_md.yaml`` picks the COVID-19 sample patient P001), blocks of
:attr:`RegionalConfig.block_slices` consecutive slices are split instead, stratified by the block's
majority label. Slices of one patient are correlated, so such a test split measures within-patient
generalisation only; the report says so.
Validation chooses the epoch (AUC) and the decision threshold (Youden's J); the test split is scored
once, with CIs from a block bootstrap (:mod:`chestlens.evaluate.ct_series`). The same test slices are
also scored by the detector alone (a slice's largest region score), the baseline the classifier must beat.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save as safetensors_bytes
from sklearn.metrics import roc_curve

from chestlens.atomic import write_bytes_atomic, write_text_atomic
from chestlens.data.registry import load_samples
from chestlens.data.root import data_root
from chestlens.data.sources.covid_ct_md import SOURCE as CT_MD
from chestlens.data.sources.covid_ct_md import slice_labels
from chestlens.data.transforms import resize_unit
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.ct_series import SeriesSliceReport, compare_slices, slice_report_markdown
from chestlens.evaluate.metrics import binary_auc
from chestlens.io import read_image
from chestlens.models.bundle import load_bundle
from chestlens.models.detection import detections_with_features
from chestlens.models.regional import RegionalClassifier, RegionInputs, region_inputs
from chestlens.preprocess.units import window_hu

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class RegionalConfig(BaseModel):
    """Everything ``chestlens train regional`` needs."""

    model_config = ConfigDict(extra="forbid")

    detector: str  # detector bundle folder
    data_root: str | None = None  # default: $CHESTLENS_DATA
    # patient ids to use (``covid_ct_md:P001``...); empty: every labelled series
    patients: tuple[str, ...] = ()
    k: int = Field(32, gt=0)  # regions per slice
    block_slices: int = Field(10, gt=0)  # split unit when there is one patient
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_seed: int = 0
    epochs: int = Field(300, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    hidden: int = Field(64, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    n_boot: int = Field(1000, ge=0)
    seed: int = 0
    out: str = "runs/regional-ct-md"


def _slices(
    root: Path, chosen: tuple[str, ...]
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, list[str]]:
    """HU slices, slice labels, the patient of each slice, and the patients, of every labelled series
    (of the ``chosen`` patients only, unless empty)."""
    pixels, labels, patients = [], [], []
    samples = load_samples(root, [CT_MD])
    if missing := set(chosen) - {sample.patient_id for sample in samples}:
        raise ChestlensInputError(root, f"no COVID-CT-MD series of patient(s) {', '.join(sorted(missing))}")
    for sample in samples:
        if chosen and sample.patient_id not in chosen:
            continue
        try:
            truth = [label.infected for label in slice_labels(sample)]
        except ChestlensInputError as error:
            log.info("skipping %s: %s", sample.path.name, error.reason)
            continue
        volume = read_image(sample.path).pixels
        if len(volume) != len(truth):
            raise ChestlensInputError(sample.path, f"{len(volume)} slices but {len(truth)} slice labels")
        pixels += list(volume)
        labels += truth
        patients += [sample.patient_id] * len(truth)
    if not labels:
        raise ChestlensInputError(root, "no COVID-CT-MD series with slice labels found")
    return pixels, np.asarray(labels, bool), np.asarray(patients), sorted(set(patients))


def split_units(labels: np.ndarray, patients: np.ndarray, cfg: RegionalConfig) -> tuple[np.ndarray, str]:
    """``(split name per slice, description)``: whole patients when there are at least 3, else blocks of
    consecutive slices, stratified by the unit's majority label, in ``cfg.split_fractions``."""
    if len(set(patients)) >= 3:
        units = patients.astype(str)
        how = "whole patients"
    else:
        index_in_patient = np.concatenate(
            [np.arange((patients == p).sum()) for p in dict.fromkeys(patients.tolist())]
        )
        units = np.char.add(patients.astype(str), (index_in_patient // cfg.block_slices).astype(str))
        how = f"blocks of {cfg.block_slices} consecutive slices of one patient (within-patient only)"
    rng = np.random.default_rng(cfg.split_seed)
    assignment: dict[str, str] = {}
    for majority in (False, True):
        group = [u for u in dict.fromkeys(units.tolist()) if (labels[units == u].mean() >= 0.5) == majority]
        group = [group[i] for i in rng.permutation(len(group))]
        n_val = max(1, round(cfg.split_fractions[1] * len(group)))
        n_test = max(1, round(cfg.split_fractions[2] * len(group)))
        for i, unit in enumerate(group):
            assignment[unit] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return np.asarray([assignment[u] for u in units]), how


@torch.no_grad()
def region_features(pixels: list[np.ndarray], detector_path: str, k: int) -> tuple[RegionInputs, int]:
    """Top-``k`` regions of every HU slice through the frozen detector; returns inputs and ``D``."""
    bundle = load_bundle(detector_path)
    if bundle.spec.kind != "detector":
        raise ChestlensInputError(detector_path, f"needs a detector bundle, got a {bundle.spec.kind}")
    detector = bundle.build_model()
    detector.roi_heads.score_thresh = 0.0  # keep weak regions too (COVID-CT-Mask-Net: -0.01)
    detector.roi_heads.detections_per_img = k
    pre = bundle.spec.preprocess
    detections, sizes = [], []
    for hu in pixels:
        unit = resize_unit(torch.from_numpy(window_hu(hu, pre))[None], pre.input_size)
        detections += detections_with_features(detector, [unit], k=k)
        sizes.append((pre.input_size, pre.input_size))
    dim = detector.roi_heads.box_head.fc7.out_features
    return region_inputs(detections, sizes, k=k, feature_dim=dim), dim


def _select(inputs: RegionInputs, where: np.ndarray) -> RegionInputs:
    index = torch.from_numpy(np.flatnonzero(where))
    return RegionInputs(*(t[index] for t in inputs))


def _train(
    cfg: RegionalConfig, inputs: RegionInputs, labels: np.ndarray, split: np.ndarray, dim: int
) -> tuple[RegionalClassifier, dict[str, Any]]:
    """Full-batch AdamW on the train slices; keeps the epoch with the best validation AUC."""
    torch.manual_seed(cfg.seed)
    model = RegionalClassifier(2, cfg.k, dim, hidden=cfg.hidden, dropout=cfg.dropout)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train, val = _select(inputs, split == "train"), _select(inputs, split == "val")
    y_train = torch.from_numpy(labels[split == "train"].astype(np.int64))
    best = (-1.0, 0, {k: v.clone() for k, v in model.state_dict().items()})
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        optimiser.zero_grad()
        loss = F.cross_entropy(model(*train), y_train)
        loss.backward()
        optimiser.step()
        model.eval()
        with torch.no_grad():
            val_auc = binary_auc(labels[split == "val"], model(*val).softmax(1)[:, 1].numpy())
        history.append({"epoch": epoch, "train_loss": loss.item(), "val_auc": val_auc})
        if np.isfinite(val_auc) and val_auc > best[0]:
            best = (val_auc, epoch, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    return model.eval(), {"best_epoch": best[1], "best_val_auc": best[0], "history": history}


def _youden(labels: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return float(thresholds[int(np.argmax(tpr - fpr))])


def run_regional(cfg: RegionalConfig) -> dict[str, Any]:
    """Cache region features, split, train, choose the threshold on validation, test once; writes
    ``OUT/regional.safetensors``, ``OUT/report.json`` and ``OUT/report.md``; returns the report dict."""
    root = Path(cfg.data_root) if cfg.data_root else data_root()
    if root is None:
        raise ChestlensInputError(None, "no data root: set CHESTLENS_DATA or data_root")
    out = Path(cfg.out)
    pixels, labels, patients, patient_list = _slices(root, cfg.patients)
    split, how = split_units(labels, patients, cfg)
    if empty := [name for name in SPLITS if not (split == name).any()]:
        raise ChestlensInputError(
            root, f"no {'/'.join(empty)} slices when split by {how}: too few patients (set patients)"
        )
    log.info("%d slices of %d patient(s); split by %s", len(labels), len(patient_list), how)
    inputs, dim = region_features(pixels, cfg.detector, cfg.k)
    model, training = _train(cfg, inputs, labels, split, dim)
    with torch.no_grad():
        probability = model(*inputs).softmax(1)[:, 1].numpy()
    detector_score = inputs.scores[:, 0].numpy()  # the slice's strongest region
    val, test = split == "val", split == "test"
    threshold = _youden(labels[val], probability[val])
    reports: dict[str, SeriesSliceReport] = {}
    for name, scores, rule_threshold, rule in (
        (
            "regional classifier",
            probability,
            threshold,
            f"P(infection) > {threshold:.3f} (Youden on validation)",
        ),
        (
            "detector alone",
            detector_score,
            _youden(labels[val], detector_score[val]),
            "strongest region score above its validation Youden threshold",
        ),
    ):
        reports[name] = compare_slices(
            f"test slices ({name})",
            scores[test],
            labels[test],
            series_score=float(scores[test].max()),
            threshold=rule_threshold,
            decision_rule=rule,
            n_boot=cfg.n_boot,
            seed=cfg.seed,
        )
    result = {
        "disclaimer": reports["regional classifier"].disclaimer,
        "config": cfg.model_dump(),
        "split": {"by": how, **{s: int((split == s).sum()) for s in SPLITS}},
        "positives": {s: int(labels[split == s].sum()) for s in SPLITS},
        "training": training,
        "test": {name: report.model_dump() for name, report in reports.items()},
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(out / "regional.safetensors", safetensors_bytes(state))
    write_text_atomic(out / "report.json", json.dumps(result, indent=2, default=str) + "\n")
    sizes = ", ".join(f"{s} {result['split'][s]} ({result['positives'][s]} infected)" for s in SPLITS)
    lines = [f"Split by {how}: {sizes} slices.", ""]
    for report in reports.values():
        lines += [*slice_report_markdown(report), ""]
    write_bytes_atomic(out / "report.md", "\n".join(lines).encode())
    return result
