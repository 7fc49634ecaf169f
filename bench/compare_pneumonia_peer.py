"""Pneumonia vs normal on the same Kermany test images: chestlens bundle vs the Keras Xception of
pneumonia-model-package, with a paired bootstrap over patients.

    python bench/compare_pneumonia_peer.py BUNDLE SPLITS.csv --tf-python /tmp/tfenv/bin/python

chestlens' score is 1 - p(normal) (pneumonia of any cause, COVID-19 included, vs normal). Caveat printed
with the result: the shared Kermany images come from Kaggle's ``train`` folder, which the Keras model was
trained on, so its AUC here is optimistic.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from chestlens.data.registry import load_samples
from chestlens.data.root import data_root
from chestlens.data.splits import load_splits
from chestlens.data.tensors import labelled_images
from chestlens.evaluate.bundle_eval import predict
from chestlens.evaluate.calibration import apply_temperature
from chestlens.evaluate.compare import compare_auc
from chestlens.models.bundle import load_bundle

CAVEAT = "Kermany images here come from Kaggle's train folder, on which the Keras model was trained."
PEER_SCRIPT = Path(__file__).with_name("peers") / "keras_pneumonia_scores.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("splits", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--tf-python", required=True, help="python of an environment with TensorFlow")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    root = data_root(args.root)
    samples = load_samples(root)
    table = load_splits(args.splits, samples)
    by_uid = {s.uid: s for s in samples}
    rows = [r for r in table.rows if r.split == args.split and r.source == "kermany"]
    items = [(by_uid[r.uid], r.label, r.group) for r in rows]
    data = labelled_images(items, bundle.spec.labels, bundle.spec.preprocess)
    logits = predict(bundle.build_model(), bundle.spec, data).logits
    probs = apply_temperature(logits, bundle.spec.temperature)
    ours = 1.0 - probs[:, bundle.spec.labels.index("normal")]
    truth = np.array([label != "normal" for _, label, _ in items])
    patients = np.array([group for _, _, group in items])

    with tempfile.TemporaryDirectory() as tmp:
        listing, scores = Path(tmp) / "images.txt", Path(tmp) / "scores.csv"
        listing.write_text("\n".join(str(s.path) for s, _, _ in items) + "\n")
        subprocess.run([args.tf_python, str(PEER_SCRIPT), str(listing), str(scores)], check=True)
        with scores.open() as handle:
            theirs = np.array([float(row["p_pneumonia"]) for row in csv.DictReader(handle)])

    result = compare_auc(truth, theirs, ours, patients, n_boot=2000, seed=0)
    payload = {
        "images": len(items),
        "patients": len(set(patients)),
        "keras_xception_auc": result.auc_a.model_dump(),
        "chestlens_auc": result.auc_b.model_dump(),
        "difference_chestlens_minus_keras": result.difference.model_dump(),
        "caveat": CAVEAT,
    }
    print(f"{'model':<32}{'AUC (95% CI over patients)':>32}")
    rows_out = (("Keras Xception (peer)", result.auc_a), (f"chestlens {bundle.spec.name}", result.auc_b))
    for name, est in rows_out:
        print(f"{name:<32}{est.value:>10.3f} [{est.low:.3f}, {est.high:.3f}]")
    d = result.difference
    print(f"difference (chestlens - peer): {d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}]; {len(items)} images")
    print(payload["caveat"])
    if args.out:
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
