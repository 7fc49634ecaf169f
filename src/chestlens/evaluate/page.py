"""Building blocks of every evaluation report: the JSON document's common fields and the self-contained
HTML page (inline CSS, figures embedded as base64 ``data:image/png`` URIs, the research-use disclaimer
first and last), both written atomically.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from chestlens import RESEARCH_USE_DISCLAIMER, __version__
from chestlens.atomic import write_text_atomic
from chestlens.evaluate.bootstrap import Estimate
from chestlens.evaluate.results import BootstrapInfo

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"

CSS = """
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


class Document(BaseModel):
    """The common part of ``report.json``: what was evaluated on what; subclasses add the metrics."""

    model_config = ConfigDict(extra="forbid")

    title: str
    disclaimer: str = RESEARCH_USE_DISCLAIMER
    generated_utc: str
    chestlens_version: str
    model: dict[str, Any]
    data: dict[str, Any]
    figures: dict[str, str]


def document_fields(
    title: str,
    model_info: Mapping[str, Any],
    data_info: Mapping[str, Any],
    figures: Mapping[str, Path],
    out_dir: Path,
) -> dict[str, Any]:
    """The :class:`Document` fields of a report written to ``out_dir`` now (figure paths relative to it)."""
    return {
        "title": title,
        "generated_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "chestlens_version": __version__,
        "model": jsonable(model_info),
        "data": jsonable(data_info),
        "figures": {name: relative_to(Path(path), out_dir) for name, path in figures.items()},
    }


def write_document(document: Document, page_html: str, out_dir: Path) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` atomically; returns ``{"json": path, "html": path}``."""
    out_dir = Path(out_dir)
    return {
        "json": write_text_atomic(out_dir / REPORT_JSON, document.model_dump_json(indent=2) + "\n"),
        "html": write_text_atomic(out_dir / REPORT_HTML, page_html),
    }


def jsonable(info: Mapping[str, Any]) -> dict[str, Any]:
    """Plain JSON values (paths, numpy numbers and other objects become strings or numbers)."""
    return json.loads(json.dumps(dict(info), default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def relative_to(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` when inside it, else as given."""
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(path)


def escape(text: object) -> str:
    return html.escape(str(text))


def estimate_cell(e: Estimate) -> str:
    """``<td>`` with ``value [low, high]``, or the reason it is undefined."""
    if e.value is None:
        return f'<td class="undef">n/a ({escape(e.reason)})</td>'
    interval = f" [{e.low:.3f}, {e.high:.3f}]" if e.low is not None and e.high is not None else ""
    return f"<td>{e.value:.3f}{interval}</td>"


def number_cell(value: float | None, fmt: str = "{:.3f}") -> str:
    return '<td class="undef">n/a</td>' if value is None else f"<td>{fmt.format(value)}</td>"


def label_cell(text: object) -> str:
    return f'<td class="l">{escape(text)}</td>'


def table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """``rows`` hold ready-made ``<td>``/``<th>`` cells; ``head`` plain texts (first column left aligned)."""
    first, *others = [escape(h) for h in head]
    cells = f'<th class="l">{first}</th>' + "".join(f"<th>{h}</th>" for h in others)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def key_values(info: Mapping[str, Any]) -> str:
    if not info:
        return '<p class="undef">none given</p>'
    rows = ([label_cell(k), label_cell(v if isinstance(v, str) else json.dumps(v))] for k, v in info.items())
    return table(("key", "value"), rows)


def _run_settings(document: Document, bootstrap: BootstrapInfo) -> dict[str, str]:
    """How the intervals were obtained, when and by which chestlens version (rows of the settings table)."""
    return {
        "bootstrap": f"{bootstrap.n_boot} resamples of {bootstrap.unit}s, {bootstrap.method} "
        f"{bootstrap.ci:.0%} CI, seed {bootstrap.seed}",
        "generated (UTC)": document.generated_utc,
        "chestlens version": document.chestlens_version,
    }


def _warnings_html(warnings: Sequence[str]) -> str:
    if not warnings:
        return "<p>No warnings.</p>"
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return f'<div class="warnings"><h2>Warnings</h2><ul>{items}</ul></div>'


def figures_html(figures: Mapping[str, Path]) -> str:
    """The PNG files embedded as data URIs, captioned with their names."""
    return "".join(
        f'<figure><img alt="{escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(Path(path).read_bytes()).decode("ascii")}"><figcaption>{escape(name)}</figcaption></figure>'
        for name, path in figures.items()
    )


class Summary(Protocol):
    """What every evaluation result carries (classification and segmentation reports)."""

    warnings: list[str]
    bootstrap: BootstrapInfo


def page(
    document: Document,
    metrics: Summary,
    settings: Mapping[str, Any],
    sections: Sequence[str],
    definitions: Mapping[str, str],
    lead: Sequence[str] = (),
) -> str:
    """The whole HTML page: disclaimer, title, ``lead`` (ready-made HTML read before anything else), the
    warnings of ``metrics``, the ``settings`` (then the bootstrap, date and version), ``sections``
    (ready-made HTML), the model and data facts, the ``definitions`` of the metrics, and the disclaimer
    again."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(document.title)}</title><style>{CSS}</style></head><body>",
        f'<div class="disclaimer">{escape(document.disclaimer)}</div>',
        f"<h1>{escape(document.title)}</h1>",
        *lead,
        _warnings_html(metrics.warnings),
        "<h2>Settings</h2>",
        key_values({**settings, **_run_settings(document, metrics.bootstrap)}),
        *sections,
        "<h2>Model</h2>",
        key_values(document.model),
        "<h2>Data</h2>",
        key_values(document.data),
        "<h2>Definitions</h2>",
        table(("metric", "definition"), ([label_cell(k), label_cell(v)] for k, v in definitions.items())),
        f'<p class="disclaimer">{escape(document.disclaimer)}</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
