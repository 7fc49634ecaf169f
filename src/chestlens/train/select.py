"""Choose among candidate bundles on VALIDATION numbers only (e.g. input sizes), and ship the winner.

The test split plays no part in the choice; every candidate's validation score is recorded in the chosen
bundle (``training.selection``) and its model card.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from chestlens.errors import ChestlensInputError
from chestlens.evaluate.kinds import write_model_card
from chestlens.evaluate.model_card import recipe_row
from chestlens.evaluate.report import ReportDocument
from chestlens.models.spec import WEIGHTS_FILE, Selection, read_spec, write_spec

#: Where ``chestlens train classify`` writes the test report, relative to the bundle folder.
TEST_REPORT_JSON = Path("..") / "test-report" / "report.json"


def recipe_rows(bundles: Sequence[Path]) -> list[dict[str, str]]:
    """Side-by-side rows (:func:`chestlens.evaluate.model_card.recipe_row`) of other recipes' bundles,
    each read with the test report its training run wrote."""
    rows = []
    for path in bundles:
        report = ReportDocument.model_validate_json((Path(path) / TEST_REPORT_JSON).read_text())
        rows.append(recipe_row(read_spec(path), report.metrics))
    return rows


def select_on_validation(
    candidates: Sequence[Path],
    out: Path,
    *,
    metric: str = "within_source_score",
    reproduce: str | None = None,
    compare: Sequence[Path] = (),
) -> Path:
    """Copy the candidate bundle with the best validation ``metric`` to ``out`` and rewrite its card.

    Args:
        candidates: bundle folders written by ``chestlens train ...`` (with the run's test report).
        out: destination bundle folder (replaced only once the new copy is complete).
        metric: key of ``metrics["validation"]``: ``[value, low, high]`` (e.g. ``macro_auc``) or a number
            (e.g. ``mean_dice`` of segmenters).
        reproduce: the command that reproduces the chosen model, for the card.
        compare: bundles of other recipes (e.g. the seed recipes) trained on the same split: never chosen,
            reported side by side with the chosen model in its card (``training.comparison``).
    """
    scored = []
    for path in candidates:
        spec = read_spec(path)
        raw = (spec.metrics.get("validation") or {}).get(metric)
        value = raw[0] if isinstance(raw, list | tuple) else raw  # [value, low, high] or a plain number
        if value is None:
            raise ChestlensInputError(path, f"bundle has no validation {metric}")
        scored.append((value, Path(path), spec))
    _, best_path, best_spec = max(scored, key=lambda item: item[0])
    selection = Selection(
        metric=f"validation {metric}",
        chosen=str(best_path),
        candidates=[
            {
                "bundle": str(p),
                "input_size": s.preprocess.input_size,
                "architecture": s.architecture,
                "validation": v,
            }
            for v, p, s in scored
        ],
    )
    training = best_spec.training.model_copy(
        update={
            "selection": selection,
            "reproduce": reproduce or best_spec.training.reproduce,  # read by the card
            "comparison": recipe_rows(compare) if compare else best_spec.training.comparison,
        }
    )
    spec = best_spec.model_copy(update={"training": training})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staging.chmod(0o755)
        shutil.copyfile(best_path / WEIGHTS_FILE, staging / WEIGHTS_FILE)
        (staging / WEIGHTS_FILE).chmod(0o644)
        write_spec(staging, spec)
        report = (best_path / TEST_REPORT_JSON).resolve()
        write_model_card(staging, report)
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
