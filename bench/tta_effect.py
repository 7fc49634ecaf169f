"""The measured effect of test-time flips (``preprocess.tta``) on the shipped segmenters.

    python bench/tta_effect.py [BUNDLE ...] [--root DATA] [--json bench/results/tta_effect.json]

Each segmenter (default: the shipped ones) is scored on its own test split (rebuilt from its bundle's
training config: same sources, seed and fractions, so none of these images was trained or tuned on)
without flips, with the
left-right flip, and with both flips, through the same evaluation as ``chestlens evaluate`` (Dice per
class with patient-bootstrap 95% CIs, on the model grid), and timed. The test splits are small (12 CT
slices, 24 radiographs): differences inside the CIs are not effects. A bundle fitted on every image
(``fit_all``) has no held-out split and is skipped: give a bundle trained on a split instead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import json_main

from chestlens.data.hashing import default_cache_path
from chestlens.data.make_split import build_splits
from chestlens.data.registry import load_samples
from chestlens.data.root import data_root
from chestlens.evaluate.bootstrap import estimate_text
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


def run(args: argparse.Namespace) -> dict[str, Any]:
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


if __name__ == "__main__":
    json_main(__doc__.splitlines()[0], None, configure, run)
