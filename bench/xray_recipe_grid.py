"""Recipe grid for the X-ray screener: the same patient-grouped folds, data and budget for every recipe.

Each recipe is ``chestlens train classify --folds K`` with the shared settings below plus its own
overrides; the table compares the out-of-fold within-source AUCs, the audit figures and the pooled AUC.
A recipe whose ``cv-report.json`` exists is read back, not re-run (the grid resumes).

    python bench/xray_recipe_grid.py --out runs/recipes            # every recipe
    python bench/xray_recipe_grid.py --out runs/recipes --only baseline,crop

Writes ``OUT/recipes.md`` and ``OUT/recipes.json``. Research use only.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from chestlens.evaluate.tables import recipe_markdown
from chestlens.train.config import ClassifyConfig, load_config
from chestlens.train.crossval import CV_JSON, cross_validate_classifier, recipe_row

#: Settings every recipe shares (the comparison budget: small inputs, short schedules, capped sources).
SHARED = [
    "sources=[ieee8023,radiopaedia,actualmed,figure1,hannover,kermany,nih]",
    "input_size=112",
    "epochs=5",
    "patience=2",
    "batch_size=32",
    "max_per_source=150",
    "selection=within_source",
]
REPRODUCE = "python bench/xray_recipe_grid.py --out runs/recipes"
#: The recipes of the "Disease, not source" comparison (ClassifyConfig overrides).
RECIPES: dict[str, list[str]] = {
    "baseline": [],
    "crop": ["lung_roi=crop"],
    "mask": ["lung_roi=mask"],
    "clahe": ["equalise=clahe"],
    "clahe+mask": ["equalise=clahe", "lung_roi=mask"],
    "source-aware": ["balance=source_balanced", "source_adversary=0.3"],
    "mask+source-aware": ["lung_roi=mask", "balance=source_balanced", "source_adversary=0.3"],
}


def run_recipe(name: str, out: Path, folds: int, n_boot: int) -> dict[str, Any]:
    """The CV report of one recipe (run now, or read from an earlier run)."""
    folder = out / name
    done = folder / CV_JSON
    if done.is_file():
        return json.loads(done.read_text())
    splits = out / "splits.csv"
    overrides = [*SHARED, *RECIPES[name], f"name={name}", f"out={folder}"]
    if splits.is_file():
        overrides.append(f"splits={splits}")
    cfg = load_config(ClassifyConfig, None, overrides)
    report = cross_validate_classifier(
        cfg, folds, progress=False, n_boot=n_boot, lung_cache=out / "lung-masks.npz"
    )
    if not splits.is_file():
        (folder / "splits.csv").replace(splits)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--boot", type=int, default=500)
    parser.add_argument("--only", default=None, help="comma-separated recipe names")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    names = args.only.split(",") if args.only else list(RECIPES)
    rows = []
    for name in names:
        rows.append(recipe_row(run_recipe(name, args.out, args.folds, args.boot)))
        settings = " ".join(SHARED)
        lines = [f"{args.folds}-fold patient-grouped cross-validation, shared settings: {settings}", ""]
        lines += recipe_markdown(rows)
        (args.out / "recipes.md").write_text("\n".join(lines) + "\n")
        grid = {"folds": args.folds, "settings": settings, "reproduce": REPRODUCE, "rows": rows}
        (args.out / "recipes.json").write_text(json.dumps(grid, indent=2) + "\n")
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
