"""Write an evaluation as ``report.json`` (all numbers) and one self-contained ``report.html``.

The page leads with the within-source AUCs (same-source pairs only); the pooled metrics that follow are
labelled as including between-source pairs. The HTML has no external resource: the CSS is inline and the
figures are embedded as base64 ``data:image/png`` URIs, so the single file can be mailed or archived.
The research-use disclaimer is the first thing in it. Both files are written atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chestlens.evaluate.page import (
    Document,
    document_fields,
    escape,
    estimate_cell,
    figures_html,
    label_cell,
    number_cell,
    page,
    table,
    write_document,
)
from chestlens.evaluate.results import POOLED_AUC_SCOPE, ClassificationReport, MetricSet
from chestlens.evaluate.tables import (
    NOT_MEASURED,
    STRATA_HEAD,
    WITHIN_SOURCE_HEAD,
    WITHIN_SOURCE_INTRO,
    strata_rows,
    within_source_rows,
)
from chestlens.evaluate.within_source import WithinSourceAUC

DEFINITIONS = {
    "sensitivity": "TP / (TP + FN), one-vs-rest per class (recall)",
    "specificity": "TN / (TN + FP)",
    "PPV": "TP / (TP + FP) (precision)",
    "NPV": "TN / (TN + FN)",
    "F1": "2 TP / (2 TP + FP + FN)",
    "within-source AUC": "share of (positive, negative) pairs from one source (view-confounded sources: one "
    "source and view) ranked correctly, ties one half; = per-source AUCs weighted by positives x negatives",
    "AUC": "one-vs-rest ROC-AUC of the class probability over all images pooled, so it includes "
    f"between-source pairs ({POOLED_AUC_SCOPE}); macro AUC = mean over classes",
    "AP": "average precision, sum of (R_k - R_k-1) P_k over decreasing thresholds",
    "balanced accuracy": "mean sensitivity over the classes present",
    "ECE": "top-label expected calibration error, equal-width bins: sum_k n_k/n |acc_k - conf_k|",
    "MCE": "largest |acc_k - conf_k| over non-empty bins",
    "Brier": "mean over images of sum over classes (p_c - [y = c])^2",
    "CI": "percentile interval of a bootstrap over patients (a patient's images are resampled together)",
}

_OP_HEAD = (
    "class",
    "threshold",
    "criterion",
    "val. sens.",
    "val. spec.",
    "flagged",
    "sensitivity",
    "specificity",
    "PPV",
    "NPV",
)


class ReportDocument(Document):
    """Content of ``report.json`` of a classifier: the evaluation plus what was evaluated on what."""

    metrics: ClassificationReport


def _metric_set_html(m: MetricSet, labels: list[str]) -> str:
    summary = table(
        ("images", "patients", "accuracy", "balanced accuracy", "macro AUC", "ECE", "MCE", "Brier"),
        [
            [
                f"<td>{m.n_images}</td>",
                f"<td>{m.n_patients}</td>",
                estimate_cell(m.accuracy),
                estimate_cell(m.balanced_accuracy),
                estimate_cell(m.macro_auc),
                estimate_cell(m.calibration.ece),
                number_cell(m.calibration.mce),
                estimate_cell(m.calibration.brier),
            ]
        ],
    )
    per_class = table(
        (
            "class",
            "images",
            "patients",
            "decided",
            "sensitivity",
            "specificity",
            "PPV",
            "NPV",
            "F1",
            "AUC",
            "AP",
        ),
        (
            [
                label_cell(c.label),
                f"<td>{c.n_images}</td>",
                f"<td>{c.n_patients}</td>",
                f"<td>{c.n_predicted}</td>",
                *(
                    estimate_cell(getattr(c, name))
                    for name in ("sensitivity", "specificity", "ppv", "npv", "f1")
                ),
                estimate_cell(c.auc),
                estimate_cell(c.average_precision),
            ]
            for c in m.per_class
        ),
    )
    confusion = table(
        ("true \\ decided", *labels),
        (
            [
                label_cell(label),
                *(
                    f"<td>{n}" + ("" if share is None else f" <small>({share:.2f})</small>") + "</td>"
                    for n, share in zip(counts, shares, strict=True)
                ),
            ]
            for label, counts, shares in zip(
                labels, m.confusion_matrix, m.confusion_matrix_normalized, strict=True
            )
        ),
    )
    points = ""
    if m.operating_points:
        points = "<h3>Operating points</h3>" + table(
            _OP_HEAD,
            (
                [
                    label_cell(op.label),
                    f"<td>{op.threshold:.4g}</td>",
                    label_cell(op.criterion),
                    number_cell(op.validation_sensitivity),
                    number_cell(op.validation_specificity),
                    f"<td>{op.n_flagged}</td>",
                    *(
                        estimate_cell(getattr(op, name))
                        for name in ("sensitivity", "specificity", "ppv", "npv")
                    ),
                ]
                for op in m.operating_points
            ),
        )
    return (
        f"{summary}{points}<h3>Per class (one-vs-rest)</h3>{per_class}"
        f"<h3>Confusion matrix (counts, row share)</h3>{confusion}"
    )


def _sources_html(per_source: Mapping[str, MetricSet]) -> str:
    """One row per source: size, class counts, accuracy and macro AUC, then each source in full."""
    if not per_source:
        return "<p>No source information.</p>"
    overview = table(
        ("source", "images", "patients", "images per class", "accuracy", "macro AUC"),
        (
            [
                label_cell(name),
                f"<td>{m.n_images}</td>",
                f"<td>{m.n_patients}</td>",
                label_cell(", ".join(f"{label}: {n}" for label, n in m.class_counts.items())),
                estimate_cell(m.accuracy),
                estimate_cell(m.macro_auc),
            ]
            for name, m in per_source.items()
        ),
    )
    labels = list(next(iter(per_source.values())).class_counts)
    details = "".join(
        f"<h3>Source: {escape(name)}</h3>{_metric_set_html(m, labels)}" for name, m in per_source.items()
    )
    return overview + details


def _reliability_html(m: MetricSet) -> str:
    return table(
        ("bin", "images", "mean confidence", "accuracy"),
        (
            [
                label_cell(f"({b.lower:.3f}, {b.upper:.3f}]"),
                f"<td>{b.count}</td>",
                number_cell(b.mean_confidence),
                number_cell(b.accuracy),
            ]
            for b in m.calibration.bins
        ),
    )


def _classification_report_html(report: dict[str, Any]) -> str:
    rows = [
        [label_cell(name)]
        + [number_cell(values.get(k), "{:.3f}") for k in ("precision", "recall", "f1-score")]
        + [number_cell(values.get("support"), "{:.0f}")]
        for name, values in report.items()
        if isinstance(values, dict)
    ]
    return table(("", "precision", "recall", "f1-score", "support"), rows)


def _text_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table of plain-text cells (escaped, left aligned)."""
    return table(head, ([label_cell(cell) for cell in row] for row in rows))


def _within_source_html(results: Sequence[WithinSourceAUC]) -> str:
    """The lead section: within-source AUC per question, then the per-source AUCs it pools."""
    heading = "<h2>Within-source AUC (read this first)</h2>"
    if not results:
        return f"{heading}<p>{escape(NOT_MEASURED)}</p>"
    return (
        f"{heading}<p>{escape(WITHIN_SOURCE_INTRO)}</p>"
        f"{_text_table(WITHIN_SOURCE_HEAD, within_source_rows(results))}"
        f"<h3>Per-source AUCs it pools</h3>{_text_table(STRATA_HEAD, strata_rows(results))}"
    )


def render_html(document: ReportDocument, figures: Mapping[str, Path]) -> str:
    """The self-contained HTML page of ``document``; ``figures`` PNG files are embedded as data URIs."""
    r = document.metrics
    sections = [
        f"<h2>Pooled over all sources (every AUC {escape(r.pooled_auc_scope)})</h2>",
        _metric_set_html(r.overall, r.labels),
        f'<h2>Figures</h2><div class="figs">{figures_html(figures)}</div>',
        "<h2>Calibration (reliability diagram data)</h2>",
        _reliability_html(r.overall),
        "<h2>Per data source</h2>",
        _sources_html(r.per_source),
        "<h2>scikit-learn classification report</h2>",
        _classification_report_html(r.overall.classification_report),
    ]
    settings = {"decision rule": r.decision_description, "temperature": r.temperature}
    return page(document, r, settings, sections, DEFINITIONS, lead=[_within_source_html(r.within_source)])


def write_report(
    report: ClassificationReport,
    figures: Mapping[str, Path],
    out_dir: Path,
    *,
    title: str,
    model_info: Mapping[str, Any],
    data_info: Mapping[str, Any],
) -> dict[str, Path]:
    """Write ``report.json`` (a :class:`ReportDocument`) and the self-contained ``report.html``.

    Args:
        figures: ``{name: png path}``, e.g. from :func:`chestlens.evaluate.save_figures`.
        model_info, data_info: free-form facts shown in the report (bundle name, split, sources...).

    Returns:
        ``{"json": path, "html": path}``.
    """
    document = ReportDocument(
        **document_fields(title, model_info, data_info, figures, out_dir),
        disclaimer=report.disclaimer,
        metrics=report,
    )
    return write_document(document, render_html(document, figures), out_dir)
