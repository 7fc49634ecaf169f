"""Write an evaluation as ``report.json`` (all numbers) and one self-contained ``report.html``.

The HTML has no external resource: the CSS is inline and the figures are embedded as base64
``data:image/png`` URIs, so the single file can be mailed or archived. The research-use disclaimer is
the first thing in it. Both files are written atomically.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from chestlens import RESEARCH_USE_DISCLAIMER, __version__
from chestlens.atomic import write_text_atomic
from chestlens.evaluate.bootstrap import Estimate
from chestlens.evaluate.results import ClassificationReport, MetricSet

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"

DEFINITIONS = {
    "sensitivity": "TP / (TP + FN), one-vs-rest per class (recall)",
    "specificity": "TN / (TN + FP)",
    "PPV": "TP / (TP + FP) (precision)",
    "NPV": "TN / (TN + FN)",
    "F1": "2 TP / (2 TP + FP + FN)",
    "AUC": "one-vs-rest ROC-AUC of the class probability; macro AUC = mean over classes",
    "AP": "average precision, sum of (R_k - R_k-1) P_k over decreasing thresholds",
    "balanced accuracy": "mean sensitivity over the classes present",
    "ECE": "top-label expected calibration error, equal-width bins: sum_k n_k/n |acc_k - conf_k|",
    "MCE": "largest |acc_k - conf_k| over non-empty bins",
    "Brier": "mean over images of sum over classes (p_c - [y = c])^2",
    "CI": "percentile interval of a bootstrap over patients (a patient's images are resampled together)",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#1a1a1a;line-height:1.4;padding:0 1em}
.disclaimer{background:#fff3cd;border:2px solid #b58100;padding:.8em 1em;font-weight:600;border-radius:4px}
.warnings{background:#fdecea;border-left:6px solid #c62828;padding:.5em 1em;margin:1em 0}
.warnings li{margin:.3em 0}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}
.undef{color:#888;font-style:italic}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs figure{margin:0;flex:1 1 45%}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
"""


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


class ReportDocument(BaseModel):
    """Content of ``report.json``: the evaluation plus what was evaluated on what."""

    model_config = ConfigDict(extra="forbid")

    title: str
    disclaimer: str = RESEARCH_USE_DISCLAIMER
    generated_utc: str
    chestlens_version: str
    model: dict[str, Any]
    data: dict[str, Any]
    figures: dict[str, str]
    metrics: ClassificationReport


def _jsonable(info: Mapping[str, Any]) -> dict[str, Any]:
    """Plain JSON values (paths, numpy numbers and other objects become strings or numbers)."""
    return json.loads(json.dumps(dict(info), default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` when inside it, else as given."""
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(path)


def _e(text: object) -> str:
    return html.escape(str(text))


def _est(e: Estimate) -> str:
    if e.value is None:
        return f'<td class="undef">n/a ({_e(e.reason)})</td>'
    interval = f" [{e.low:.3f}, {e.high:.3f}]" if e.low is not None and e.high is not None else ""
    return f"<td>{e.value:.3f}{interval}</td>"


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return '<td class="undef">n/a</td>' if value is None else f"<td>{fmt.format(value)}</td>"


def _table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """``rows`` hold ready-made ``<td>``/``<th>`` cells; ``head`` plain texts (first column left aligned)."""
    first, *others = [_e(h) for h in head]
    cells = f'<th class="l">{first}</th>' + "".join(f"<th>{h}</th>" for h in others)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _label(text: object) -> str:
    return f'<td class="l">{_e(text)}</td>'


def _key_values(info: Mapping[str, Any]) -> str:
    if not info:
        return '<p class="undef">none given</p>'
    rows = ([_label(k), _label(v if isinstance(v, str) else json.dumps(v))] for k, v in info.items())
    return _table(("key", "value"), rows)


def _metric_set_html(m: MetricSet, labels: list[str]) -> str:
    summary = _table(
        ("images", "patients", "accuracy", "balanced accuracy", "macro AUC", "ECE", "MCE", "Brier"),
        [
            [
                f"<td>{m.n_images}</td>",
                f"<td>{m.n_patients}</td>",
                _est(m.accuracy),
                _est(m.balanced_accuracy),
                _est(m.macro_auc),
                _est(m.calibration.ece),
                _num(m.calibration.mce),
                _est(m.calibration.brier),
            ]
        ],
    )
    per_class = _table(
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
                _label(c.label),
                f"<td>{c.n_images}</td>",
                f"<td>{c.n_patients}</td>",
                f"<td>{c.n_predicted}</td>",
                *(_est(getattr(c, name)) for name in ("sensitivity", "specificity", "ppv", "npv", "f1")),
                _est(c.auc),
                _est(c.average_precision),
            ]
            for c in m.per_class
        ),
    )
    confusion = _table(
        ("true \\ decided", *labels),
        (
            [
                _label(label),
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
        points = "<h3>Operating points</h3>" + _table(
            _OP_HEAD,
            (
                [
                    _label(op.label),
                    f"<td>{op.threshold:.4g}</td>",
                    _label(op.criterion),
                    _num(op.validation_sensitivity),
                    _num(op.validation_specificity),
                    f"<td>{op.n_flagged}</td>",
                    *(_est(getattr(op, name)) for name in ("sensitivity", "specificity", "ppv", "npv")),
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
    overview = _table(
        ("source", "images", "patients", "images per class", "accuracy", "macro AUC"),
        (
            [
                _label(name),
                f"<td>{m.n_images}</td>",
                f"<td>{m.n_patients}</td>",
                _label(", ".join(f"{label}: {n}" for label, n in m.class_counts.items())),
                _est(m.accuracy),
                _est(m.macro_auc),
            ]
            for name, m in per_source.items()
        ),
    )
    labels = list(next(iter(per_source.values())).class_counts)
    details = "".join(
        f"<h3>Source: {_e(name)}</h3>{_metric_set_html(m, labels)}" for name, m in per_source.items()
    )
    return overview + details


def _reliability_html(m: MetricSet) -> str:
    return _table(
        ("bin", "images", "mean confidence", "accuracy"),
        (
            [
                _label(f"({b.lower:.3f}, {b.upper:.3f}]"),
                f"<td>{b.count}</td>",
                _num(b.mean_confidence),
                _num(b.accuracy),
            ]
            for b in m.calibration.bins
        ),
    )


def _classification_report_html(report: dict[str, Any]) -> str:
    rows = [
        [_label(name)]
        + [_num(values.get(k), "{:.3f}") for k in ("precision", "recall", "f1-score")]
        + [_num(values.get("support"), "{:.0f}")]
        for name, values in report.items()
        if isinstance(values, dict)
    ]
    return _table(("", "precision", "recall", "f1-score", "support"), rows)


def render_html(document: ReportDocument, figures: Mapping[str, Path]) -> str:
    """The self-contained HTML page of ``document``; ``figures`` PNG files are embedded as data URIs."""
    r = document.metrics
    warnings = (
        '<div class="warnings"><h2>Warnings</h2><ul>'
        + "".join(f"<li>{_e(w)}</li>" for w in r.warnings)
        + "</ul></div>"
        if r.warnings
        else "<p>No warnings.</p>"
    )
    images = "".join(
        f'<figure><img alt="{_e(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(Path(path).read_bytes()).decode("ascii")}"><figcaption>{_e(name)}</figcaption></figure>'
        for name, path in figures.items()
    )
    settings = {
        "decision rule": r.decision_description,
        "temperature": r.temperature,
        "bootstrap": f"{r.bootstrap.n_boot} resamples of {r.bootstrap.unit}s, {r.bootstrap.method} "
        f"{r.bootstrap.ci:.0%} CI, seed {r.bootstrap.seed}",
        "generated (UTC)": document.generated_utc,
        "chestlens version": document.chestlens_version,
    }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(document.title)}</title><style>{_CSS}</style></head><body>",
        f'<div class="disclaimer">{_e(document.disclaimer)}</div>',
        f"<h1>{_e(document.title)}</h1>",
        warnings,
        "<h2>Settings</h2>",
        _key_values(settings),
        "<h2>Overall</h2>",
        _metric_set_html(r.overall, r.labels),
        f'<h2>Figures</h2><div class="figs">{images}</div>',
        "<h2>Calibration (reliability diagram data)</h2>",
        _reliability_html(r.overall),
        "<h2>Per data source</h2>",
        _sources_html(r.per_source),
        "<h2>scikit-learn classification report</h2>",
        _classification_report_html(r.overall.classification_report),
        "<h2>Model</h2>",
        _key_values(document.model),
        "<h2>Data</h2>",
        _key_values(document.data),
        "<h2>Definitions</h2>",
        _table(("metric", "definition"), ([_label(k), _label(v)] for k, v in DEFINITIONS.items())),
        f'<p class="disclaimer">{_e(document.disclaimer)}</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


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
    out_dir = Path(out_dir)
    document = ReportDocument(
        title=title,
        disclaimer=report.disclaimer,
        generated_utc=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        chestlens_version=__version__,
        model=_jsonable(model_info),
        data=_jsonable(data_info),
        figures={name: _relative(Path(path), out_dir) for name, path in figures.items()},
        metrics=report,
    )
    return {
        "json": write_text_atomic(out_dir / REPORT_JSON, document.model_dump_json(indent=2) + "\n"),
        "html": write_text_atomic(out_dir / REPORT_HTML, render_html(document, figures)),
    }
