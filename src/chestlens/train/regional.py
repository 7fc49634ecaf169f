"""``chestlens train regional``: COVID-CT-Mask-Net style slice classification from a detector's regions.

A trained lesion detector (a ``kind="detector"`` bundle, e.g. from ``chestlens train detect``) is frozen;
every CT slice goes through it once (windowed and resized by the detector's own ``PreprocessSpec``), and
its top ``k`` regions (box, score, class, RoI feature; :func:`chestlens.models.detection.
detections_with_features` with the score threshold at 0 so weak regions count, as COVID-CT-Mask-Net
does) are cached. Instead of a detector, :attr:`RegionalConfig.segmenter` names a multiclass lesion
segmenter (e.g. the bundled ``lesions-ct-segmenter``): its connected components per class are the regions
(:mod:`chestlens.models.segmenter_regions`), and no detector needs training.
A :class:`~chestlens.models.regional.RegionalClassifier` then learns "infection present"
from the slice labels of the labelled series (COVID-CT-MD; :attr:`RegionalConfig.patients` picks some).

Split: with series from several patients, whole patients go to train, validation or test. When the data
hold one patient only (``configs/regional_ct_md.yaml`` picks the COVID-19 sample patient P001), blocks of
:attr:`RegionalConfig.block_slices` consecutive slices are split instead, stratified by the block's
majority label. Slices of one patient are correlated, so such a test split measures within-patient
generalisation only; the report says so.
Validation chooses the epoch (AUC) and the decision threshold (Youden's J); the test split is scored
once, with CIs from a block bootstrap (:mod:`chestlens.evaluate.ct_series`). The same test slices are
also scored by the region source alone (a slice's largest region score), the baseline the classifier
must beat.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from sklearn.metrics import roc_curve

from chestlens.atomic import write_bytes_atomic, write_text_atomic
from chestlens.data.ct_slices import labelled_slices
from chestlens.data.root import data_root
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.ct_series import SeriesSliceReport, compare_slices, slice_report_markdown
from chestlens.evaluate.kinds import write_model_card
from chestlens.evaluate.metrics import binary_auc
from chestlens.models.bundle import load_bundle, save_bundle
from chestlens.models.regional import (
    REGION_SOURCES,
    RegionalClassifier,
    RegionalModel,
    RegionInputs,
    ct_slice_units,
    regional_over,
    regional_spec_kwargs,
)
from chestlens.models.segmenter_regions import SegmenterRegionalModel, region_feature_dim
from chestlens.models.spec import BundleRef, BundleSpec, ClassThreshold, TrainingSummary
from chestlens.strict import StrictModel
from chestlens.train.run import BUNDLE_DIR

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: The task and labels of the slice classifier this trains.
TASK = "ct-slice-infection"
LABELS = ("no_infection", "infection")


class RegionalConfig(StrictModel):
    """Everything ``chestlens train regional`` needs."""

    detector: str | None = None  # detector bundle folder (give this or ``segmenter``)
    segmenter: str | None = None  # multiclass lesion segmenter bundle (folder or bundled name)
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
    name: str = "regional-ct-slices"
    version: str = "0.1.0"

    @model_validator(mode="after")
    def _one_source(self) -> RegionalConfig:
        if (self.detector is None) == (self.segmenter is None):
            raise ValueError("give one region source: detector or segmenter")
        return self

    @property
    def source(self) -> str:
        """The region source bundle: :attr:`detector` or :attr:`segmenter`."""
        return self.detector or self.segmenter  # type: ignore[return-value]


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


def frozen_regions(
    pixels: list[np.ndarray], source_path: str, cfg: RegionalConfig
) -> tuple[RegionalModel | SegmenterRegionalModel, RegionInputs, BundleSpec]:
    """The regional model over the frozen region source of ``source_path`` (a detector or a multiclass
    segmenter bundle; its classifier untrained), the top-``cfg.k`` regions of every HU slice through that
    source (computed once, then cached), and the source's spec."""
    source = load_bundle(source_path)
    spec = source.spec
    if spec.kind not in REGION_SOURCES:
        raise ChestlensInputError(
            source.path, f"regions come from a {' or '.join(REGION_SOURCES)} bundle, not a {spec.kind}"
        )
    if spec.kind == "segmenter" and spec.architecture_kwargs.get("mode") != "multiclass":
        raise ChestlensInputError(source.path, "regions come from a multiclass (lesion) segmenter only")
    network = source.build_model()
    if spec.kind == "segmenter":
        feature_dim = region_feature_dim(len(spec.labels))
    else:
        feature_dim = network.roi_heads.box_head.fc7.out_features
    head = RegionalClassifier(
        2, cfg.k, feature_dim, num_region_classes=len(spec.labels) - 1, hidden=cfg.hidden, dropout=cfg.dropout
    )
    model = regional_over(spec, network, head).eval()
    return model, model.regions(ct_slice_units(pixels, spec.preprocess)), spec


def _select(inputs: RegionInputs, where: np.ndarray) -> RegionInputs:
    index = torch.from_numpy(np.flatnonzero(where))
    return RegionInputs(*(t[index] for t in inputs))


def train_head(
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


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold of ``scores`` in ``[0, 1]`` (decision: score above it) with the largest sensitivity +
    specificity - 1 on ``labels``; where no threshold beats calling nothing positive (scikit-learn's
    first threshold is infinite), 1."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return float(np.clip(thresholds[int(np.argmax(tpr - fpr))], 0.0, 1.0))


def _bundle_spec(
    cfg: RegionalConfig,
    source: BundleSpec,
    model: RegionalModel | SegmenterRegionalModel,
    threshold: float,
    training: dict[str, Any],
    result: dict[str, Any],
) -> BundleSpec:
    """The ``kind="regional"`` bundle of a trained run: the region source and the classifier in one
    bundle."""
    reference = BundleRef(name=source.name, version=source.version, weights_sha256=source.weights_sha256)
    return BundleSpec(
        name=cfg.name,
        version=cfg.version,
        kind="regional",
        task=TASK,
        architecture="regional_classifier",
        architecture_kwargs=regional_spec_kwargs(
            source, k=cfg.k, feature_dim=model.feature_dim, hidden=cfg.hidden, dropout=cfg.dropout
        ),
        labels=list(LABELS),
        preprocess=source.preprocess,
        operating_points=[
            ClassThreshold(label=LABELS[1], threshold=threshold, criterion="Youden's J on validation slices")
        ],
        training=TrainingSummary(
            config=cfg.model_dump(mode="json"),
            **{source.kind: reference},
            split=result["split"],
            history=training["history"],
            best_epoch=training["best_epoch"],
        ),
        metrics={"test": result["test"]},
    )


def run_regional(cfg: RegionalConfig) -> dict[str, Any]:
    """Cache region features, split, train, choose the threshold on validation, test once; writes the
    ``kind="regional"`` bundle (region source and classifier, ``OUT/bundle``), ``OUT/report.json`` and
    ``OUT/report.md``; returns the report dict."""
    root = Path(cfg.data_root) if cfg.data_root else data_root()
    if root is None:
        raise ChestlensInputError(None, "no data root: set CHESTLENS_DATA or data_root")
    out = Path(cfg.out)
    slices = labelled_slices(root, cfg.patients)
    labels = slices.infected
    split, how = split_units(labels, slices.patient_of, cfg)
    if empty := [name for name in SPLITS if not (split == name).any()]:
        raise ChestlensInputError(
            root, f"no {'/'.join(empty)} slices when split by {how}: too few patients (set patients)"
        )
    log.info("%d slices of %d patient(s); split by %s", len(labels), len(slices.patients), how)
    regional_model, inputs, source = frozen_regions(slices.pixels, cfg.source, cfg)
    model, training = train_head(cfg, inputs, labels, split, regional_model.feature_dim)
    with torch.no_grad():
        probability = model(*inputs).softmax(1)[:, 1].numpy()
    source_score = inputs.scores[:, 0].numpy()  # the slice's strongest region (0: none)
    val, test = split == "val", split == "test"
    threshold = youden_threshold(labels[val], probability[val])
    reports: dict[str, SeriesSliceReport] = {}
    for name, scores, rule_threshold, rule in (
        (
            "regional classifier",
            probability,
            threshold,
            f"P(infection) > {threshold:.3f} (Youden on validation)",
        ),
        (
            f"{source.kind} alone",
            source_score,
            youden_threshold(labels[val], source_score[val]),
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
    regional_model.head = model
    spec = _bundle_spec(cfg, source, regional_model, threshold, training, result)
    bundle = save_bundle(spec, regional_model.state_dict(), out / BUNDLE_DIR)
    write_text_atomic(out / "report.json", json.dumps(result, indent=2, default=str) + "\n")
    write_model_card(bundle, out / "report.json")
    sizes = ", ".join(f"{s} {result['split'][s]} ({result['positives'][s]} infected)" for s in SPLITS)
    lines = [f"Split by {how}: {sizes} slices.", ""]
    for report in reports.values():
        lines += [*slice_report_markdown(report), ""]
    write_bytes_atomic(out / "report.md", "\n".join(lines).encode())
    return result
