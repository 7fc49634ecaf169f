"""Cross-validation of the regional slice classifier: ``chestlens train regional --folds K``.

The frozen region source's (detector's or segmenter's) regions of every labelled slice are computed once
(:func:`frozen_regions`); then
for each fold:

1. test = the fold. Folds are whole patients when there are at least ``K`` of them (``K`` = the number
   of patients is leave-one-patient-out), else blocks of :attr:`RegionalConfig.block_slices`
   consecutive slices dealt into ``K`` folds, stratified by the block's majority label
   (within-patient only, and the report says so);
2. validation = about ``split_fractions[1]`` of the remaining blocks of consecutive slices (stratified
   by majority label, seeded): it chooses the epoch (AUC) and the threshold (Youden's J), for the
   classifier and for the baseline, the region source alone (a slice's strongest region score);
3. train = the rest, as ``train regional`` trains.

Every slice is scored once by a model that did not train on its fold. Decisions use each fold's own
threshold, so the pooled figures are computed on threshold-centred scores (score minus its fold's
threshold, decision above 0); the pooled AUC of the raw probabilities is reported beside them. CIs:
block bootstrap over consecutive slices (:mod:`chestlens.evaluate.ct_series`). Outputs:
``regional-cv-report.json`` and ``.md`` under ``cfg.out``; no bundle.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestlens.atomic import write_text_atomic
from chestlens.data.ct_slices import labelled_slices
from chestlens.data.root import data_root
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.ct_series import SeriesSliceReport, compare_slices, slice_report_markdown
from chestlens.evaluate.metrics import binary_auc
from chestlens.train.regional import RegionalConfig, frozen_regions, train_head, youden_threshold

log = logging.getLogger(__name__)

REGIONAL_CV_JSON = "regional-cv-report.json"
REGIONAL_CV_MARKDOWN = "regional-cv-report.md"


def _blocks(patients: np.ndarray, block_slices: int) -> np.ndarray:
    """A block name per slice: ``block_slices`` consecutive slices of one patient."""
    index = np.concatenate([np.arange((patients == p).sum()) for p in dict.fromkeys(patients.tolist())])
    return np.char.add(np.char.add(patients.astype(str), "#"), (index // block_slices).astype(str))


def _deal(
    units: list[str], labels: np.ndarray, unit_of: np.ndarray, k: int, rng: np.random.Generator
) -> dict:
    """Units dealt round-robin into ``k`` groups, clean-majority and infected-majority units apart."""
    group: dict[str, int] = {}
    for majority in (False, True):
        same = [u for u in units if (labels[unit_of == u].mean() >= 0.5) == majority]
        for i, unit in enumerate(same[j] for j in rng.permutation(len(same))):
            group[unit] = i % k
    return group


def fold_of_slices(
    labels: np.ndarray, patients: np.ndarray, cfg: RegionalConfig, k: int
) -> tuple[np.ndarray, str]:
    """``(fold per slice, how the folds were made)`` (module docstring, step 1)."""
    rng = np.random.default_rng(cfg.split_seed)
    names = sorted(set(patients.tolist()))
    if len(names) >= k:
        order = [names[i] for i in rng.permutation(len(names))]
        fold = {p: i % k for i, p in enumerate(order)}
        how = "leave one patient out" if len(names) == k else f"whole patients in {k} folds"
        return np.asarray([fold[p] for p in patients]), how
    blocks = _blocks(patients, cfg.block_slices)
    fold = _deal(list(dict.fromkeys(blocks.tolist())), labels, blocks, k, rng)
    how = f"blocks of {cfg.block_slices} consecutive slices in {k} folds (within-patient only)"
    return np.asarray([fold[b] for b in blocks]), how


def _validation(
    pool: np.ndarray, labels: np.ndarray, patients: np.ndarray, cfg: RegionalConfig
) -> np.ndarray:
    """Validation slices among the ``pool`` (bool per slice): blocks of consecutive slices, about
    ``split_fractions[1]`` of them, stratified by majority label, seeded."""
    blocks = _blocks(patients, cfg.block_slices)
    units = list(dict.fromkeys(blocks[pool].tolist()))
    every = max(2, round(1 / max(cfg.split_fractions[1], 1e-6)))
    group = _deal(units, labels, blocks, every, np.random.default_rng(cfg.split_seed))
    return pool & np.asarray([group.get(b, -1) == 0 for b in blocks])


def cross_validate_regional(cfg: RegionalConfig, folds: int) -> dict[str, Any]:
    """Run the cross-validation (module docstring); writes and returns the report."""
    if folds < 2:
        raise ChestlensInputError(None, "cross-validation needs at least 2 folds")
    root = Path(cfg.data_root) if cfg.data_root else data_root()
    if root is None:
        raise ChestlensInputError(None, "no data root: set CHESTLENS_DATA or data_root")
    slices = labelled_slices(root, cfg.patients)
    labels, patients = slices.infected, slices.patient_of
    fold_of, how = fold_of_slices(labels, patients, cfg, folds)
    model, inputs, source = frozen_regions(slices.pixels, cfg.source, cfg)
    source_score = inputs.scores[:, 0].numpy()
    probability, centred, source_centred = (np.zeros(len(labels)) for _ in range(3))
    per_fold = []
    for fold in range(folds):
        test = fold_of == fold
        val = _validation(~test, labels, patients, cfg)
        split = np.where(test, "test", np.where(val, "val", "train"))
        if not (split == "train").any() or len(set(labels[val])) < 2:
            raise ChestlensInputError(root, f"fold {fold}: no training slices or a one-class validation")
        head, training = train_head(cfg, inputs, labels, split, model.feature_dim)
        with torch.no_grad():
            fold_probability = head(*inputs).softmax(1)[:, 1].numpy()
        threshold, source_threshold = (
            youden_threshold(labels[val], fold_probability[val]),
            youden_threshold(labels[val], source_score[val]),
        )
        probability[test] = fold_probability[test]
        centred[test] = fold_probability[test] - threshold
        source_centred[test] = source_score[test] - source_threshold
        per_fold.append(
            {
                "fold": fold,
                "n_train": int((split == "train").sum()),
                "n_val": int(val.sum()),
                "n_test": int(test.sum()),
                "patients_tested": sorted(set(patients[test].tolist())),
                "best_epoch": training["best_epoch"],
                "threshold": threshold,
                "test_auc": binary_auc(labels[test], fold_probability[test]),
            }
        )
        log.info("fold %d: test AUC %.3f", fold, per_fold[-1]["test_auc"])
    baseline = (f"{source.kind} alone", source_centred)
    report = _report(cfg, folds, how, labels, patients, probability, centred, baseline, per_fold)
    out = Path(cfg.out)
    write_text_atomic(out / REGIONAL_CV_JSON, json.dumps(report, indent=2, default=str) + "\n")
    write_text_atomic(out / REGIONAL_CV_MARKDOWN, "\n".join(regional_cv_markdown(report)) + "\n")
    return report


def _report(
    cfg: RegionalConfig,
    folds: int,
    how: str,
    labels: np.ndarray,
    patients: np.ndarray,
    probability: np.ndarray,
    centred: np.ndarray,
    baseline: tuple[str, np.ndarray],
    per_fold: list[dict[str, Any]],
) -> dict[str, Any]:
    """``centred``: the classifier's out-of-fold scores minus their folds' thresholds; ``baseline``: the
    region source alone, its name and its scores centred the same way."""

    def compare(name: str, scores: np.ndarray, where: np.ndarray, rule: str) -> SeriesSliceReport:
        return compare_slices(
            name,
            scores[where],
            labels[where],
            series_score=float(scores[where].max()),
            threshold=0.0,
            decision_rule=rule,
            n_boot=cfg.n_boot,
            seed=cfg.seed,
        )

    def scored(scores: np.ndarray, rule: str) -> dict[str, Any]:
        return {
            "pooled": compare(
                "all slices, out of fold", scores, np.ones(len(labels), bool), rule
            ).model_dump(),
            "per_patient": {
                p: compare(p, scores, patients == p, rule).model_dump()
                for p in sorted(set(patients.tolist()))
            },
        }

    baseline_name, baseline_scores = baseline
    return {
        "kind": "regional cross-validation",
        "folds": folds,
        "folds_by": how,
        "n_slices": len(labels),
        "patients": sorted(set(patients.tolist())),
        "recipe": cfg.model_dump(mode="json", exclude={"out"}),
        "pooled_auc_of_probabilities": binary_auc(labels, probability),
        "regional classifier": scored(centred, "P(infection) above its fold's validation threshold (Youden)"),
        "baseline": baseline_name,
        baseline_name: scored(
            baseline_scores, "strongest region score above its fold's validation threshold (Youden)"
        ),
        "per_fold": per_fold,
    }


def regional_cv_markdown(report: dict[str, Any]) -> list[str]:
    """The report as Markdown lines."""
    lines = [
        f"# Regional classifier cross-validation: {report['folds']} folds ({report['folds_by']})",
        "",
        f"{report['n_slices']} slices of {len(report['patients'])} patient(s), each scored once by a model "
        "that did not train on its fold. Pooled AUC of the raw out-of-fold probabilities: "
        f"{report['pooled_auc_of_probabilities']:.3f}. Below, scores are centred on each fold's "
        "validation threshold.",
        "",
    ]
    for name, suffix in (("regional classifier", ""), (report["baseline"], " (the baseline)")):
        lines += [f"## {name.capitalize()}{suffix}", ""]
        for part in [report[name]["pooled"], *report[name]["per_patient"].values()]:
            lines += [*slice_report_markdown(SeriesSliceReport.model_validate(part)), ""]
    return lines
