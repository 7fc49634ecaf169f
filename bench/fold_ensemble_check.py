"""A fold ensemble against its own members (and other CT lesion bundles) on whole CT series.

    python bench/fold_ensemble_check.py ENSEMBLE [--reference BUNDLE ...] [--series FOLDER ...]
        [--members K ...] [--n-boot 200] [--json bench/results/fold_ensemble_check.json]

ENSEMBLE is a fold-ensemble segmenter bundle (``chestlens train segment --folds K --ensemble``). An
ensemble has no out-of-fold figure of its own (every image trained K - 1 of its members), so it is
compared with its members on series outside the cross-validation: by default the three COVID-CT-MD
patients under ``$CHESTLENS_DATA`` (P001 COVID-19, cap002 CAP, normal002), none used to train any of
the lesion models. Each model (the ensemble, each member taken out as a bundle of its own, each
``--reference``) screens every series as ``chestlens evaluate-series`` does (Hounsfield-unit lungs, the
lesion clean-up rules, 3-D lesions; PyTorch runtime for all, so the models differ only in weights):
slice-level infection AUC against the slice labels (95% CI by block bootstrap over consecutive slices),
lesion volume per class and the share of the lungs involved. The false lesion volume of the normal
patient is the volume it reports. Series verdicts are left out: a threshold chosen on these patients
would be judged on them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import json_main

from chestlens.data.root import data_root
from chestlens.data.sources.covid_ct_md import slice_labels
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.bootstrap import estimate_text
from chestlens.evaluate.ct_series import compare_slices
from chestlens.models.catalog import resolve_bundle
from chestlens.models.spec import read_spec
from chestlens.pipeline.screener import Screener
from chestlens.train.seg_ensemble import member_bundle

#: The three shared COVID-CT-MD patients, under ``$CHESTLENS_DATA/covid-ct-md/Sample data``.
SHARED_SERIES = ("COVID-19 subjects/P001", "Cap subjects", "Normal subjects/normal002")


def default_series() -> list[Path]:
    """The shared COVID-CT-MD series (an error when the data is absent)."""
    root = data_root()
    folder = None if root is None else root / "covid-ct-md" / "Sample data"
    if folder is None or not folder.is_dir():
        raise ChestlensInputError(folder, "no COVID-CT-MD data: set CHESTLENS_DATA or pass --series")
    return [folder / name for name in SHARED_SERIES]


def screen_series(bundle: Path, series: list[Path], n_boot: int) -> dict[str, Any]:
    """Every series screened by the CT lesion bundle at ``bundle``: per series its slice AUC, lesion
    volumes and lung share; the seconds it took in all."""
    started = time.perf_counter()
    screener = Screener(classifier=None, lungs=None, lesions=[str(bundle)], runtime="torch", cam=None)
    rows = {}
    for folder in series:
        summary = screener.screen(folder).result.lesions
        if summary is None or summary.slice_scores is None:
            raise ChestlensInputError(folder, "not screened as a CT series with lesions")
        labels = [label.infected for label in slice_labels(folder)]
        report = compare_slices(
            folder.name,
            summary.slice_scores,
            labels,
            series_score=summary.series_score or 0.0,
            n_boot=n_boot,
        )
        rows[folder.name] = {
            "slice_auc": report.auc.model_dump() if any(labels) and not all(labels) else None,
            "volume_ml_by_label": summary.volume_ml_by_label,
            "lesion_ml": round(sum(summary.volume_ml_by_label.values()), 2),
            "lung_fraction_total": summary.lung_fraction_total,
            "n_infected_slices": int(sum(labels)),
        }
    return {"series": rows, "seconds": round(time.perf_counter() - started, 1)}


def markdown(models: dict[str, dict[str, Any]], series: list[Path]) -> list[str]:
    """One row per model: the slice AUC of each series with infected slices, the lesion volume of each."""
    names = [folder.name for folder in series]
    head = "| model | " + " | ".join(f"{n} slice AUC | {n} lesion mL" for n in names) + " | seconds |"
    lines = [head, "|---|" + "---|---|" * len(names) + "---|"]
    for model, result in models.items():
        cells = []
        for name in names:
            row = result["series"][name]
            auc = estimate_text(row["slice_auc"]) if row["slice_auc"] else "n/a"
            volumes = " + ".join(f"{v:.1f}" for v in row["volume_ml_by_label"].values())
            cells.append(f"{auc} | {volumes} = {row['lesion_ml']:.1f}")
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {result['seconds']:.0f} |")
    return lines


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensemble = resolve_bundle(str(args.ensemble))
    spec = read_spec(ensemble)
    members = spec.architecture_kwargs.get("members")
    if not isinstance(members, int):
        raise ChestlensInputError(ensemble, "not a fold ensemble (no architecture_kwargs.members)")
    series = args.series or default_series()
    models: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        bundles = {f"fold ensemble ({members} members)": ensemble}
        for k in range(members) if args.members is None else args.members:
            bundles[f"member {k}"] = member_bundle(ensemble, k, Path(tmp) / f"member-{k}")
        for reference in args.reference:
            path = resolve_bundle(reference)
            bundles[f"{read_spec(path).name} {read_spec(path).version}"] = path
        for name, bundle in bundles.items():
            models[name] = screen_series(bundle, series, args.n_boot)
            print(markdown({name: models[name]}, series)[-1], flush=True)  # each row as it is measured
    print("\n".join(markdown(models, series)))
    return {
        "ensemble": f"{spec.name} {spec.version}",
        "members": members,
        "input_size": spec.preprocess.input_size,
        "n_boot": args.n_boot,
        "models": models,
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ensemble", type=Path, help="fold-ensemble bundle (train segment --folds K --ensemble)"
    )
    parser.add_argument(
        "--reference", action="append", default=[], help="another CT lesion bundle to compare"
    )
    parser.add_argument("--series", type=Path, nargs="+", help="CT series folders with COVID-CT-MD labels")
    parser.add_argument("--n-boot", type=int, default=200, help="block-bootstrap resamples per series")
    parser.add_argument("--members", type=int, nargs="*", help="only these members (default: every one)")


if __name__ == "__main__":
    json_main(__doc__.splitlines()[0], None, configure, run)
