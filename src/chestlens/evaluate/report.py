"""Write an evaluation as ``report.json`` (all numbers) and one self-contained ``report.html``.

The page leads with the within-source AUCs (same-source pairs only); the pooled metrics that follow are
labelled as including between-source pairs. The HTML has no external resource: the CSS is inline and the
figures are embedded as base64 ``data:image/png`` URIs, so the single file can be mailed or archived.
The research-use disclaimer is the first thing in it. Both files are written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chestlens.evaluate.page import Document, document_fields, page, write_document
from chestlens.evaluate.results import POOLED_AUC_SCOPE, ClassificationReport

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


class ReportDocument(Document):
    """Content of ``report.json`` of a classifier: the evaluation plus what was evaluated on what."""

    metrics: ClassificationReport


def render_html(document: ReportDocument, figures: Mapping[str, Path]) -> str:
    """The self-contained HTML page of ``document`` (template ``report.html``); ``figures`` PNG files are
    embedded as data URIs."""
    r = document.metrics
    settings = {"decision rule": r.decision_description, "temperature": r.temperature}
    return page("report.html", document, r, settings, DEFINITIONS, figures, r=r)


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
