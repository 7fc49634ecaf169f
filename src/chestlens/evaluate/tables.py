"""What the evaluation outputs (HTML report, model card, shortcut audit, terminal) share about tables: the
rows and headings that present within-source AUCs (:mod:`chestlens.evaluate.within_source`), laid out by
the templates (``within_source`` of ``_macros.md``, ``report.html``), and the recipe comparison.

Cells are plain text; the HTML templates escape them (``label_cell`` of ``templates/_macros.html``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chestlens.evaluate.bootstrap import estimate_text
from chestlens.evaluate.within_source import VIEW_STRATIFIED_SOURCES, StratumAUC, WithinSourceAUC
from chestlens.rendering import macro_lines

#: One sentence that says what a within-source AUC is, put before its tables.
WITHIN_SOURCE_INTRO = (
    "Within-source AUC: the share of (positive, negative) image pairs from the same source ranked "
    f"correctly ({', '.join(sorted(VIEW_STRATIFIED_SOURCES))}: same source and view), so it cannot be "
    "earned by telling sources apart; the per-source AUCs pooled with weights positives x negatives. "
    "'A vs B' questions use the images of classes A and B and the score log p(A) - log p(B). "
    "95% CI by bootstrap over patients."
)
WITHIN_SOURCE_HEAD = (
    "question",
    "within-source AUC (95% CI)",
    "same-source pairs",
    "sources pooled",
    "left out (one side only)",
)
#: Said instead of the tables when the images' sources are unknown.
NOT_MEASURED = "Not measured: the images' sources were not recorded."
STRATA_HEAD = ("question", "source", "positives", "negatives", "AUC inside the source (95% CI)")


def within_source_rows(results: Sequence[WithinSourceAUC]) -> list[list[str]]:
    """One row per question under :data:`WITHIN_SOURCE_HEAD`."""
    return [
        [
            r.question,
            estimate_text(r.pooled, reason=True),
            str(r.n_pairs),
            ", ".join(s.stratum for s in r.strata) or "none",
            ", ".join(r.excluded) or "none",
        ]
        for r in results
    ]


def strata_rows(results: Sequence[WithinSourceAUC]) -> list[list[str]]:
    """One row per (question, source holding both sides) under :data:`STRATA_HEAD`."""
    return [
        [r.question, s.stratum, str(s.n_positive), str(s.n_negative), estimate_text(s.auc, reason=True)]
        for r in results
        for s in r.strata
    ]


def _stratum_text(s: StratumAUC) -> str:
    return f"{s.stratum} {estimate_text(s.auc)} ({s.n_positive} pos / {s.n_negative} neg)"


def within_source_text(r: WithinSourceAUC) -> str:
    """One line for a terminal: the AUC, its pair count, the per-source AUCs and the sources left out."""
    per_source = "; ".join(_stratum_text(s) for s in r.strata) or "none"
    left_out = f"; left out (one side only): {', '.join(r.excluded)}" if r.excluded else ""
    return (
        f"{r.question}: {estimate_text(r.pooled, reason=True)} over {r.n_pairs} same-source pairs; "
        f"per source: {per_source}{left_out}"
    )


RECIPE_HEAD = (
    "recipe",
    "COVID-19 vs rest, within-source",
    "pneumonia vs normal, within-source",
    "per-fold score, mean ± sd",
    "pooled macro AUC*",
    "lungs masked out, macro AUC*",
    "CAM mass in lungs",
    "source probe, above majority",
)


def recipe_markdown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The recipe comparison of cross-validated recipes (rows of :func:`chestlens.train.crossval.recipe_row`)
    as Markdown lines, with its footnote."""
    return macro_lines("_macros.md", "recipe_table", rows)
