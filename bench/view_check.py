"""Train and cross-validate the gate's view checks (``chestlens.pipeline.view``): frontal or lateral, and
radiograph or picture of a CT slice.

    python bench/view_check.py [--target lateral|ct_picture] [--root DATA] [--folds 5] [--repeats 5]
                               [--out MODEL.json] [--features CACHE.npz] [--json REPORT.json]

``--target lateral`` (the default) writes ``src/chestlens/pipeline/view_model.json``; ``--target
ct_picture`` writes ``ct_picture_model.json`` beside it: every radiograph of known view (frontal and
lateral, label 0) against pictures of axial CT slices (label 1): the Inf-Net slices (JPEG crops, one group
per slice: no patient ids upstream) and every slice of every COVID-CT-MD series rendered as an 8-bit
picture in the lung window and again in the mediastinal window (one group per patient), as a user who
exports a CT slice to PNG would give it.

Data: every X-ray source under the data root whose view is known: lateral films (view ``L``: ieee8023
and radiopaedia) against frontal films (PA, AP, AP Supine, AP erect; Kermany's films, which carry no view
column, are all frontal). Images of unknown view are left out. Each image goes through the screener's
own stages (read, the working image, the bundled lung segmenter on ONNX Runtime), so the features are
exactly those the gate computes.

Protocol: patient-grouped stratified k-fold cross-validation (one patient's films never in two folds;
ieee8023 and v7_lungs share patients and are grouped together), repeated with ``--repeats`` shuffles:
with 32 laterals one split says little (the share of laterals rejected moved from 50% to 88% between
seeds in the first version of these features). For each regularisation strength C, the out-of-fold
P(lateral) of every film in every repeat gives the threshold that rejects no frontal film out of fold in
any repeat (the highest frontal score), and per repeat the ROC AUC and the share of laterals at or above
that threshold. The C with the most laterals rejected on average (ties: higher AUC, then smaller C) is
refitted on all films and stored with its threshold. Prints the table; the stored JSON carries the
figures and this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

from chestlens.data.registry import load_samples
from chestlens.data.root import data_root
from chestlens.io import read_image, scan_series
from chestlens.io.raster import READ_MAX_SIDE
from chestlens.io.windowing import lung_window, mediastinum_window
from chestlens.pipeline.screener import Screener
from chestlens.pipeline.view import CT_PICTURE_MODEL, VIEW_MODEL, view_features
from chestlens.preprocess.graph_io import INPUT_NAME
from chestlens.preprocess.resize import working_image

X_RAY_SOURCES = (
    "ieee8023", "radiopaedia", "hannover", "kermany", "nih", "actualmed", "figure1", "v7_lungs",
    "generalblockchain",
)  # fmt: skip
FRONTAL = {"PA", "AP", "AP Supine", "AP erect"}
C_GRID = (0.03, 0.1, 0.3, 1.0)
#: What each target's positive class is, its stored model, and the label of its positives in the report.
TARGETS = {"lateral": (VIEW_MODEL, "lateral"), "ct_picture": (CT_PICTURE_MODEL, "CT picture")}
#: An input: (source, patient group, a loader of its grey image in [0, 1], label).
Item = tuple[str, str, Callable[[], np.ndarray], int]


def _picture(path: Path) -> np.ndarray:
    """A film or picture as the screener reads it (no shared one is larger than ``READ_MAX_SIDE``)."""
    return read_image(path, max_side=READ_MAX_SIDE).pixels.astype(np.float32, copy=False)


def _exported_slice(path: Path, window: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A CT slice in HU, windowed and rounded to 8 bits as a PNG export would be."""
    return np.round(window(read_image(path).pixels) * 255.0).astype(np.float32) / 255.0


def labelled_films(root: Path, lateral_label: int = 1) -> list[Item]:
    """Every film of known view; laterals get ``lateral_label``, frontal films 0."""
    films = []
    for sample in load_samples(root, list(X_RAY_SOURCES)):
        view = sample.view if sample.view is not None or sample.source != "kermany" else "PA"
        if view not in FRONTAL and view != "L":
            continue
        group = sample.patient_id.replace("v7_lungs:", "ieee8023:")  # same patients, same folds
        label = lateral_label if view == "L" else 0
        films.append((sample.source, group, partial(_picture, sample.path), label))
    return films


def ct_pictures(root: Path) -> list[Item]:
    """Pictures of axial CT slices: Inf-Net's crops, and each COVID-CT-MD slice in two windows."""
    items: list[Item] = [
        ("infnet", s.patient_id, partial(_picture, s.path), 1) for s in load_samples(root, ["infnet"])
    ]
    for series in load_samples(root, ["covid_ct_md"]):
        for path in scan_series(series.path)[0].files:
            for window in (lung_window, mediastinum_window):
                items.append(("covid_ct_md", series.patient_id, partial(_exported_slice, path, window), 1))
    return items


def features_of(items: list[Item], screener: Screener) -> np.ndarray:
    """The view features of each input, computed as the screener's gate does."""
    rows = []
    for index, (_, _, load, _) in enumerate(items):
        work = working_image(load(), screener.working_side)
        lungs = screener.lungs.run({INPUT_NAME: work[None, None]})["probabilities"][0, 0]
        rows.append(view_features(work, lungs))
        if index % 200 == 0:
            print(f"features {index}/{len(items)}", file=sys.stderr)
    return np.stack(rows)


def fit(x: np.ndarray, y: np.ndarray, c: float) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(scaler.transform(x), y)
    return scaler, model


def out_of_fold(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, c: float, folds: int, seed: int
) -> np.ndarray:
    scores = np.zeros(len(y))
    split = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in split.split(x, y, groups):
        scaler, model = fit(x[train], y[train], c)
        scores[test] = model.predict_proba(scaler.transform(x[test]))[:, 1]
    return scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="lateral")
    parser.add_argument("--root", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="cross-validation repeats (seeds)")
    parser.add_argument("--out", type=Path, help="the model file (default: the target's shipped file)")
    parser.add_argument("--features", type=Path, help="cache of the computed features (.npz)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    out, positive = TARGETS[args.target]
    out = args.out or out
    root = data_root(args.root)
    if args.target == "lateral":
        films = labelled_films(root)
    else:
        films = labelled_films(root, lateral_label=0) + ct_pictures(root)
    y = np.array([f[3] for f in films])
    groups = np.array([f[1] for f in films])
    sources = np.array([f[0] for f in films])
    if args.features and args.features.is_file():
        x = np.load(args.features)["x"]
    else:
        x = features_of(films, Screener())
        if args.features:
            np.savez_compressed(args.features, x=x)
    print(f"{len(films)} inputs: {int(y.sum())} {positive}, {int((1 - y).sum())} not; {args.folds} folds")
    negative = "frontal" if args.target == "lateral" else "radiograph"
    rows, oof = [], {}
    for c in C_GRID:
        oof[c] = [out_of_fold(x, y, groups, c, args.folds, seed) for seed in range(args.repeats)]
        threshold = float(max(scores[y == 0].max() for scores in oof[c]))
        recall = [float((scores[y == 1] > threshold).mean()) for scores in oof[c]]
        auc = [float(roc_auc_score(y, scores)) for scores in oof[c]]
        rows.append({"C": c, "threshold": threshold, "recall": recall, "auc": auc})
        print(
            f"C={c:<5g} out-of-fold AUC {np.mean(auc):.4f} (repeats {min(auc):.4f}-{max(auc):.4f}); "
            f"no {negative} rejected above {threshold:.4f}: {positive}s rejected {np.mean(recall):.1%} "
            f"(repeats {min(recall):.1%}-{max(recall):.1%})"
        )
    best = max(rows, key=lambda r: (np.mean(r["recall"]), np.mean(r["auc"]), -r["C"]))
    rejected = np.mean([scores > best["threshold"] for scores in oof[best["C"]]], axis=0)  # per film
    keys = ("frontal", "lateral") if args.target == "lateral" else ("negative", "positive")
    per_source = {
        name: {
            keys[0]: int(((sources == name) & (y == 0)).sum()),
            f"{keys[0]}_rejected_mean": float(rejected[(sources == name) & (y == 0)].sum()),
            keys[1]: int(((sources == name) & (y == 1)).sum()),
            f"{keys[1]}_rejected_mean": float(rejected[(sources == name) & (y == 1)].sum()),
        }
        for name in sorted(set(sources))
    }
    scaler, model = fit(x, y, best["C"])
    in_sample = model.predict_proba(scaler.transform(x))[:, 1]
    command = f"python bench/view_check.py --target {args.target} --folds {args.folds}"
    command += f" --repeats {args.repeats}"
    report = {
        "command": command,
        "films": len(films),
        f"{keys[1]}s": int(y.sum()),
        "folds": args.folds,
        "repeats": args.repeats,
        "grid": rows,
        "chosen": best,
        "out_of_fold_by_source": per_source,
        "all_data_fit": {
            f"{keys[0]}_rejected": int((in_sample[y == 0] > best["threshold"]).sum()),
            f"{keys[1]}_rejected": int((in_sample[y == 1] > best["threshold"]).sum()),
        },
    }
    stored = {
        "description": (
            f"logistic regression (C={best['C']:g}) on the view features of {len(films)} inputs "
            f"({int(y.sum())} {positive}s); threshold {best['threshold']:.4f} = the highest out-of-fold "
            f"score of a {negative} film ({args.folds} patient-grouped folds x {args.repeats} repeats), "
            f"where {np.mean(best['recall']):.1%} of {positive}s were rejected out of fold on average"
        ),
        "threshold": best["threshold"],
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "weights": model.coef_[0].tolist(),
        "bias": float(model.intercept_[0]),
        "report": report,
    }
    out.write_text(json.dumps(stored, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "grid"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
