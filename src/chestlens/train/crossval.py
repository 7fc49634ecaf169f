"""Patient-grouped k-fold cross-validation of a classifier recipe: ``chestlens train classify --folds K``.

With a few dozen same-source patients, one random validation split says little. Here every labelled
image is tested exactly once, by a model that never saw its patient group:

1. the run's split table (patients linked across ids, sources and near-duplicate pixels) gives the
   groups; groups are dealt into ``K`` folds, stratified by source x class (scikit-learn's
   ``StratifiedGroupKFold``, seeded);
2. images are decoded once through the recipe's preprocessing (lung crop, mask, equalisation) with
   their lung masks on the classifier grid;
3. for fold ``k``: test = fold ``k``; about a fifth of the other folds' patient groups (by a stable
   hash) = validation (early stopping, temperature); train = the rest; the model is trained by the same
   loop as ``train classify``;
4. the out-of-fold probabilities are pooled: within-source AUC of every binary question with patient
   bootstrap CIs, pooled macro AUC, and the per-fold values (mean and standard deviation);
5. the shortcut audit on the out-of-fold images: macro and within-source AUC with the lungs masked out
   and with the lungs only, the Grad-CAM mass inside the lungs (per true class), and a source probe
   on each fold model's features of its test images.

Outputs under ``cfg.out``: ``cv-report.json``, ``cv-report.md`` and ``oof-predictions.csv``. No
bundle is written: a recipe chosen here is then trained with ``train classify`` (no ``--folds``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chestlens.atomic import write_text_atomic
from chestlens.data.splits import SPLITS, SplitTable
from chestlens.data.tasks import get_task
from chestlens.data.tensors import LabelledImages
from chestlens.evaluate.calibration import apply_temperature, fit_temperature
from chestlens.evaluate.shortcut_audit import cam_energy_in_lungs, images_with_lungs, masked_variants
from chestlens.evaluate.source_probe import pooled_features, source_probe
from chestlens.evaluate.within_source import strata_of, within_source_report
from chestlens.models.bundle import Bundle, load_bundle
from chestlens.models.factory import create_model
from chestlens.models.inference import predict_logits
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.rendering import render
from chestlens.train.classify import (
    CLASSIFICATION_SOURCES,
    classification_samples,
    classifier_preprocess,
    provisional_spec,
)
from chestlens.train.config import ClassifyConfig
from chestlens.train.loop import macro_auc, train_classifier, within_source_score
from chestlens.train.run import split_table, start_run

log = logging.getLogger(__name__)

CV_JSON = "cv-report.json"
CV_MARKDOWN = "cv-report.md"
OOF_CSV = "oof-predictions.csv"
AUDIT_VIEWS = ("full image", "lungs masked out", "lungs only")
#: One patient group in this many (by CRC32 of its id) of the non-test folds validates.
VAL_BUCKETS = 5


def assign_folds(table: SplitTable, k: int, seed: int) -> dict[str, int]:
    """Fold index per patient group, groups stratified by source x class (``StratifiedGroupKFold``)."""
    from sklearn.model_selection import StratifiedGroupKFold

    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    rows = table.rows
    strata = np.asarray([f"{r.source}|{r.label}" for r in rows])
    groups = np.asarray([r.group for r in rows])
    folds: dict[str, int] = {}
    split = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(split.split(np.zeros(len(rows)), strata, groups)):
        folds.update({groups[i]: fold for i in test})
    return folds


def fold_roles(fold_of_image: np.ndarray, groups: Sequence[str], fold: int) -> dict[str, np.ndarray]:
    """Image indices of ``train``/``val``/``test`` for ``fold``.

    Test is the fold; validation is the patient groups of the other folds whose stable hash falls in
    one of :data:`VAL_BUCKETS` buckets (about 1/5 of them), train the rest. Validation only stops
    training early and fits the temperature.
    """
    in_val = np.asarray([zlib.crc32(g.encode()) % VAL_BUCKETS == 0 for g in groups])
    others = fold_of_image != fold
    return {
        "test": np.flatnonzero(~others),
        "val": np.flatnonzero(others & in_val),
        "train": np.flatnonzero(others & ~in_val),
    }


def image_folds(table: SplitTable, patient_ids: Sequence[str], k: int, seed: int) -> np.ndarray:
    """Fold of every image ``(N,)``: its patient group's fold by :func:`assign_folds`. Every
    cross-validation (classifier, segmenter, detector) assigns its folds here, so the same split table,
    seed and ``k`` give every image the same fold whatever the recipe."""
    group_fold = assign_folds(table, k, seed)
    return np.asarray([group_fold[g] for g in patient_ids], dtype=int)


def iter_folds(
    fold_of_image: np.ndarray, groups: Sequence[str], k: int
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """``(fold, roles)`` for folds ``0..k-1``, ``roles`` the image indices of :func:`fold_roles`."""
    for fold in range(k):
        yield fold, fold_roles(fold_of_image, groups, fold)


def fold_fingerprint(uids: Sequence[str], fold_of_image: np.ndarray) -> str:
    """A short hash of the ``(uid, fold)`` pairs (order-free): two CV reports with the same fingerprint
    tested every image in the same fold."""
    lines = sorted(f"{uid}\t{int(f)}" for uid, f in zip(uids, fold_of_image, strict=True))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _bundle_view(cfg: ClassifyConfig, spec: PreprocessSpec, labels: list[str]) -> Bundle:
    """A weightless bundle carrying the spec, for the audit helpers that read architecture and labels."""
    return Bundle(spec=provisional_spec(cfg, spec, labels), path=None, state_dict={})


def _fold_outputs(
    cfg: ClassifyConfig,
    data: LabelledImages,
    masks: np.ndarray,
    roles: dict[str, np.ndarray],
    labels: list[str],
    spec: PreprocessSpec,
    out: Path,
    progress: bool,
) -> dict[str, Any]:
    """Train one fold; calibrated test probabilities per audit view, CAM shares, probe and history."""
    train, val, test = (data.subset(roles[s]) for s in SPLITS)
    model = create_model(cfg.model, len(labels), in_chans=1, weights=cfg.weights, drop_rate=cfg.drop_rate)
    outcome = train_classifier(model, cfg, spec, labels, train, val, out, progress=progress)
    model.load_state_dict(outcome.best_state)
    model.eval()
    temperature = fit_temperature(predict_logits(model, val.images, spec).numpy(), val.targets.numpy())
    views = masked_variants(test.images, masks[roles["test"]])
    probs = {
        name: apply_temperature(predict_logits(model, images, spec).numpy(), temperature)
        for name, images in views.items()
    }
    shares = cam_energy_in_lungs(_bundle_view(cfg, spec, labels), model, test.images, masks[roles["test"]])
    probe = source_probe(pooled_features(model, test.images, spec), test.sources, test.patient_ids)
    return {
        "probs": probs,
        "cam_share": shares,
        "probe": probe.model_dump(),
        "best_epoch": outcome.best_epoch,
        "best_val_score": outcome.best_score,
        "temperature": temperature,
    }


def _pooled(
    data: LabelledImages, probs: np.ndarray, labels: list[str], n_boot: int, seed: int
) -> dict[str, Any]:
    targets = data.targets.numpy()
    strata = strata_of(data.sources, data.views or None)
    report = within_source_report(targets, probs, labels, strata, data.patient_ids, n_boot=n_boot, seed=seed)
    return {
        "macro_auc_includes_between_source_pairs": macro_auc(targets, probs),
        "within_source": [r.model_dump() for r in report],
    }


def cross_validate_classifier(
    cfg: ClassifyConfig,
    folds: int,
    *,
    progress: bool = True,
    n_boot: int = 1000,
    lung_cache: Path | None = None,
) -> dict[str, Any]:
    """Run ``folds``-fold patient-grouped cross-validation of ``cfg``'s recipe; returns the CV report
    (also written to ``cfg.out``). See the module docstring for the protocol.

    Args:
        lung_cache: ``.npz`` file that keeps the lung masks between runs (recipes share the images).
    """
    _, out, root = start_run(cfg)
    task = get_task(cfg.task)
    sources = cfg.sources or [
        name for name in CLASSIFICATION_SOURCES[task.modality] if name not in ("folder", "manifest")
    ]
    samples = classification_samples(cfg, root, sources, task.modality)
    table = split_table(cfg, task.name, root, samples, out)
    labels = list(task.classes)
    items = [item for split in SPLITS for item in table.labelled(samples, split)]
    spec = classifier_preprocess(cfg)
    log.info("decoding %d images at %d px with lung masks", len(items), cfg.input_size)
    data, masks = images_with_lungs(items, labels, spec, load_bundle(cfg.lungs), lung_cache)
    fold_of_image = image_folds(table, data.patient_ids, folds, cfg.split_seed)

    oof = {name: np.zeros((len(data), len(labels))) for name in AUDIT_VIEWS}
    cam_share = np.full(len(data), np.nan)
    per_fold = []
    for fold, roles in iter_folds(fold_of_image, data.patient_ids, folds):
        fold_cfg = cfg.model_copy(update={"out": str(out / f"fold-{fold}")})
        result = _fold_outputs(fold_cfg, data, masks, roles, labels, spec, out / f"fold-{fold}", progress)
        for name in AUDIT_VIEWS:
            oof[name][roles["test"]] = result["probs"][name]
        cam_share[roles["test"]] = result["cam_share"]
        test = data.subset(roles["test"])
        full = result["probs"]["full image"]
        per_fold.append(
            {
                "fold": fold,
                "n_test": len(test),
                "test_within_source_score": within_source_score(
                    test.targets.numpy(), full, test.sources, test.views
                ),
                "test_macro_auc": macro_auc(test.targets.numpy(), full),
                "source_probe": result["probe"],
                **{k: result[k] for k in ("best_epoch", "best_val_score", "temperature")},
            }
        )
    report = _report(cfg, data, labels, oof, cam_share, per_fold, folds, n_boot)
    _write_outputs(out, report, data, labels, oof["full image"])
    return report


def _report(
    cfg: ClassifyConfig,
    data: LabelledImages,
    labels: list[str],
    oof: dict[str, np.ndarray],
    cam_share: np.ndarray,
    per_fold: list[dict[str, Any]],
    folds: int,
    n_boot: int,
) -> dict[str, Any]:
    targets = data.targets.numpy()

    def spread(key: str) -> dict[str, float]:
        values = np.asarray([f[key] for f in per_fold], dtype=float)
        return {"mean": float(np.nanmean(values)), "sd": float(np.nanstd(values, ddof=1))}

    excess = np.asarray([f["source_probe"]["excess"] or np.nan for f in per_fold], dtype=float)
    return {
        "recipe": {
            k: getattr(cfg, k)
            for k in (
                "name",
                "model",
                "input_size",
                "epochs",
                "lung_roi",
                "lung_margin",
                "equalise",
                "balance",
                "source_adversary",
                "selection",
                "sources",
                "exclude_views",
            )
        },
        "folds": folds,
        "n_images": len(data),
        "n_patient_groups": len(set(data.patient_ids)),
        "labels": labels,
        "views": {name: _pooled(data, probs, labels, n_boot, cfg.seed) for name, probs in oof.items()},
        "per_fold": per_fold,
        "fold_spread": {
            "test_within_source_score": spread("test_within_source_score"),
            "test_macro_auc": spread("test_macro_auc"),
        },
        "cam_in_lungs": {
            "mean": float(np.nanmean(cam_share)),
            "mean_by_true_class": {
                label: float(np.nanmean(cam_share[targets == k]))
                for k, label in enumerate(labels)
                if (targets == k).any()
            },
        },
        "source_probe_excess": {"mean": float(np.nanmean(excess)), "per_fold": excess.tolist()},
    }


def _write_outputs(
    out: Path, report: dict[str, Any], data: LabelledImages, labels: list[str], probs: np.ndarray
) -> None:
    frame = pd.DataFrame(
        {
            "uid": data.uids,
            "source": data.sources,
            "view": data.views,
            "group": data.patient_ids,
            "label": [labels[t] for t in data.targets.tolist()],
            **{f"p_{label}": probs[:, k] for k, label in enumerate(labels)},
        }
    )
    write_text_atomic(out / OOF_CSV, frame.to_csv(index=False))
    write_text_atomic(out / CV_JSON, json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / CV_MARKDOWN, "\n".join(cv_markdown(report)) + "\n")


def cv_markdown(report: dict[str, Any]) -> list[str]:
    """The CV report as Markdown lines (template ``cv_report.md``): within-source AUCs first, then the
    audit and pooled AUC."""
    return render("cv_report.md", report=report).split("\n")


def recipe_row(report: dict[str, Any]) -> dict[str, Any]:
    """One row of a recipe table: the headline figures of a CV report."""
    full, masked = report["views"]["full image"], report["views"]["lungs masked out"]
    questions = {row["question"]: row["pooled"] for row in full["within_source"]}
    return {
        "recipe": report["recipe"]["name"],
        "within_source": questions,
        "fold_score": report["fold_spread"]["test_within_source_score"],
        "pooled_macro_auc": full["macro_auc_includes_between_source_pairs"],
        "masked_out_macro_auc": masked["macro_auc_includes_between_source_pairs"],
        "cam_in_lungs": report["cam_in_lungs"]["mean"],
        "source_probe_excess": report["source_probe_excess"]["mean"],
    }


def recipe_score(row: dict[str, Any]) -> float:
    """How a recipe is chosen: the mean of its pooled out-of-fold within-source AUCs of COVID-19 vs rest
    and pneumonia vs normal (every image counted once; missing questions are skipped)."""
    values = [
        e["value"]
        for question, e in row["within_source"].items()
        if question in ("COVID-19 vs rest", "pneumonia vs normal") and e.get("value") is not None
    ]
    return float(np.mean(values)) if values else float("nan")


def read_recipe_grid(path: Path) -> dict[str, Any]:
    """A recipe grid's ``recipes.json`` (``folds``, ``settings``, ``reproduce``, ``rows``) with the
    ``chosen`` recipe (:func:`recipe_score`), for the bundle's ``training.recipe_grid``."""
    grid = json.loads(Path(path).read_text())
    chosen = max(grid["rows"], key=recipe_score)
    return {**grid, "chosen": chosen["recipe"]}


__all__ = [
    "assign_folds",
    "cross_validate_classifier",
    "cv_markdown",
    "fold_fingerprint",
    "fold_roles",
    "image_folds",
    "iter_folds",
    "read_recipe_grid",
    "recipe_row",
    "recipe_score",
]
