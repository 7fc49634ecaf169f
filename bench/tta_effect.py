"""The measured effect of test-time augmentation (``preprocess.tta``: flips, rescalings) on segmenters.

    python bench/tta_effect.py [BUNDLE ...] [--root DATA] [--json bench/results/tta_effect.json]

Each segmenter (default: the shipped ones) is scored on its own test split (rebuilt from its bundle's
training config: same sources, seed and fractions, so none of these images was trained or tuned on)
without flips, with the
left-right flip, and with both flips, through the same evaluation as ``chestlens evaluate`` (Dice per
class with patient-bootstrap 95% CIs, on the model grid), and timed. The test splits are small (12 CT
slices, 24 radiographs): differences inside the CIs are not effects. A bundle fitted on every image
(``fit_all``) has no held-out split and is skipped: give a bundle trained on a split instead.

    python bench/tta_effect.py --oof RUN RUN-FLIPPED [RUN-FLIPPED ...] [--json ...]

measures them out of fold instead: RUN is a segmenter cross-validation (``train segment --folds K``)
and each RUN-FLIPPED the same fold models re-scored with test-time augmentation (a copy of RUN, then
``--folds K --resume --set tta=[hflip]`` or ``tta=[scale_up,scale_down]``; the reports must share the fold
fingerprint). Every image was tested by a model that never saw its patient, with and without them, so the
per-image Dice differences are paired: their mean per class with a patient-bootstrap 95% CI.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import json_main

from chestlens.data.hashing import default_cache_path
from chestlens.data.make_split import build_splits
from chestlens.data.registry import load_samples
from chestlens.data.root import data_root
from chestlens.evaluate.bootstrap import bootstrap, estimate, estimate_text
from chestlens.evaluate.seg_eval import evaluate_segmenter_items
from chestlens.models.bundle import Bundle, load_bundle

SEGMENTERS = ("lungs-segmenter", "lesions-ct-segmenter")
VARIANTS = {"none": (), "hflip": ("hflip",), "hflip+vflip": ("hflip", "vflip")}


def test_items(bundle: Bundle, root: Path) -> list:
    """The bundle's test split, rebuilt from its training config."""
    config = bundle.spec.training.config
    table = build_splits(
        root,
        bundle.spec.task,
        config.get("sources"),
        seed=int(config.get("split_seed", 0)),
        fractions=config.get("split_fractions", (0.7, 0.15, 0.15)),
        cache=default_cache_path(),
    ).table
    return table.labelled(load_samples(root), "test")


def oof_dice(run: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A cross-validation's report and its out-of-fold Dice rows (``oof-dice.csv``)."""
    report = json.loads((run / "seg-cv-report.json").read_text())
    with (run / "oof-dice.csv").open(newline="") as handle:
        return report, list(csv.DictReader(handle))


def paired_effect(base: list[dict[str, str]], other: list[dict[str, str]], n_boot: int) -> dict[str, Any]:
    """Per class (grid Dice columns): the mean per-image Dice difference ``other - base`` over the images
    scored in both, with a patient-bootstrap 95% CI; and both means on those images."""
    by_uid = {row["uid"]: row for row in other}
    if set(by_uid) != {row["uid"] for row in base}:
        raise SystemExit("the runs scored different images")
    patients = np.array([row["patient_id"] for row in base])
    effects = {}
    for column in [c for c in base[0] if c.startswith("dice_")]:
        a = np.array([float(row[column] or "nan") for row in base])
        b = np.array([float(by_uid[row["uid"]][column] or "nan") for row in base])
        both = np.isfinite(a) & np.isfinite(b)
        diff = np.where(both, b - a, 0.0)

        def mean_difference(weights: np.ndarray, diff: np.ndarray = diff, both: np.ndarray = both) -> dict:
            w = weights * both
            with np.errstate(invalid="ignore", divide="ignore"):
                return {"d": (w * diff).sum(axis=1) / w.sum(axis=1)}

        samples = bootstrap(mean_difference, patients, n_boot, seed=0)["d"]
        effects[column.removeprefix("dice_")] = {
            "n_images": int(both.sum()),
            "without": float(a[both].mean()),
            "with": float(b[both].mean()),
            "difference": estimate(float(diff[both].mean()), samples, 0.95).model_dump(),
        }
    return effects


def run_oof(args: argparse.Namespace) -> dict[str, Any]:
    base_run, *flipped_runs = args.oof
    base_report, base_rows = oof_dice(base_run)
    fingerprint = base_report["fold_assignment"]["fingerprint"]
    out: dict[str, Any] = {"base": str(base_run), "fingerprint": fingerprint}
    for run in flipped_runs:
        report, rows = oof_dice(run)
        if report["fold_assignment"]["fingerprint"] != fingerprint:
            raise SystemExit(f"{run} was scored on other folds (fold fingerprints differ)")
        flips = "+".join(report["recipe"].get("tta") or []) or "none"
        out[flips] = paired_effect(base_rows, rows, args.n_boot)
        for label, row in out[flips].items():
            print(
                f"{flips:12s} {label:14s} {row['without']:.3f} -> {row['with']:.3f}, difference "
                f"{estimate_text(row['difference'])} ({row['n_images']} images)"
            )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.oof:
        return run_oof(args)
    root = args.root or data_root()
    report: dict[str, Any] = {"root": str(root), "segmenters": {}}
    for name in args.segmenters or SEGMENTERS:
        bundle = load_bundle(name)
        if bundle.spec.training.fitted_on_all_data:
            print(f"{name}: skipped, fitted on every image (no held-out split); give a split-trained bundle")
            continue
        items = test_items(bundle, root)
        rows = {}
        for variant, flips in VARIANTS.items():
            preprocess = bundle.spec.preprocess.model_copy(update={"tta": flips})
            flipped = Bundle(
                bundle.spec.model_copy(update={"preprocess": preprocess}), bundle.path, bundle.state_dict
            )
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                summary, _ = evaluate_segmenter_items(
                    flipped, items, Path(tmp), variant, {}, n_boot=args.n_boot
                )
                seconds = time.perf_counter() - start
            rows[variant] = {
                "seconds": round(seconds, 1),
                "per_class": {label: numbers["dice"] for label, numbers in summary["per_class"].items()},
            }
        report["segmenters"][name] = {"n_images": len(items), "variants": rows}
        print(f"{name}: {len(items)} test images")
        for variant, row in rows.items():
            cells = ", ".join(f"{label} {estimate_text(d)}" for label, d in row["per_class"].items())
            print(f"  {variant:12s} {cells}  ({row['seconds']} s)")
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("segmenters", nargs="*", help=f"segmenter bundles (default: {', '.join(SEGMENTERS)})")
    parser.add_argument("--root", type=Path, help="data root (default $CHESTLENS_DATA)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--oof", type=Path, nargs="+", help="a CV run, then its re-scores with flips")


if __name__ == "__main__":
    json_main(__doc__.splitlines()[0], None, configure, run)
