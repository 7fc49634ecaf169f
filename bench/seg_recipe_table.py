"""The recipe table of segmenter cross-validations run on the same folds.

    python bench/seg_recipe_table.py [RUN ...] [--json bench/results/seg_recipes_<target>.json]
        [--card BUNDLE [--test-report REPORT_JSON] --reproduce CMD --epochs-note TEXT --choice TEXT
         [--instances-note TEXT]]

Each RUN is the output folder of ``chestlens train segment --config ... --folds K --set out=RUN`` (its
``seg-cv-report.json``). The runs must share the target and the folds (the reports' fold fingerprints):
the table then compares recipes on exactly the same held-out images. Recipes are chosen on these
out-of-fold figures, never on one test split.

``--card BUNDLE`` stores the first RUN's CV (the bundle's recipe) with the others as the recipes compared
in the bundle's ``metrics.cross_validation`` and re-renders its model card (from ``--test-report``, or with
no test section for a fit on all data). ``--append-to BUNDLE`` instead adds every RUN to the recipe table
the bundle's card already has (same folds), with ``--choice`` as the new choice text: for recipes run
after the card was written; with no RUN it replaces the choice text only (a figure in it re-measured).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from common import json_main

from chestlens.models.spec import read_spec
from chestlens.train.seg_crossval import (
    SEG_CV_JSON,
    attach_cross_validation,
    card_cross_validation,
    class_rows,
    recipe_label,
    recipe_table,
    train_seconds,
    with_recipes,
)


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[Path] = args.runs
    if not runs and not args.append_to:
        raise SystemExit("name the CV runs (RUN ...); only --append-to may go without, to replace its choice")
    reports = [json.loads((run / SEG_CV_JSON).read_text()) for run in runs]
    if reports:
        print("\n".join(recipe_table(reports)))
    if args.append_to:
        section = read_spec(args.append_to).metrics.get("cross_validation")
        if not section or not args.choice:
            raise SystemExit("--append-to needs a bundle whose card has a cross-validation, and --choice")
        grown = with_recipes(section, reports, args.choice)
        print(f"card: {attach_cross_validation(args.append_to, grown, None)}")
    elif args.card:
        section = card_cross_validation(
            reports[0],
            reproduce=args.reproduce,
            epochs_note=args.epochs_note,
            instances_note=args.instances_note,
            compared=reports[1:],
            choice=args.choice,
        )
        print(f"card: {attach_cross_validation(args.card, section, args.test_report)}")
    return {
        "target": reports[0]["target"] if reports else None,
        "fingerprint": reports[0]["fold_assignment"]["fingerprint"] if reports else None,
        "recipes": [
            {
                "run": str(run),
                "recipe": recipe_label(report["recipe"]),
                "train_seconds": train_seconds(report),
                "classes": class_rows(report),
            }
            for run, report in zip(runs, reports, strict=True)
        ],
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", type=Path, help="CV output folders (seg-cv-report.json)")
    parser.add_argument("--card", type=Path, help="bundle whose recipe the first RUN cross-validated")
    parser.add_argument("--append-to", type=Path, help="bundle whose card's recipe table the RUNs join")
    parser.add_argument("--test-report", type=Path, help="the bundle's test report.json (none: fit on all)")
    parser.add_argument("--reproduce", default="", help="the command that reran the first RUN's CV")
    parser.add_argument("--epochs-note", default="", help="the folds' epoch budget, in words")
    parser.add_argument("--choice", help="why the bundle's recipe was chosen or kept")
    parser.add_argument("--instances-note", help="how instances were scored and what ships them")


if __name__ == "__main__":
    json_main(__doc__.splitlines()[0], None, configure, run)
