"""Building blocks of every evaluation report: the JSON document's common fields and the self-contained
HTML page (inline CSS, figures embedded as base64 ``data:image/png`` URIs, the research-use disclaimer
first and last; templates ``_page.html`` and ``_evaluation.html``), both written atomically.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from chestlens import RESEARCH_USE_DISCLAIMER, __version__
from chestlens.atomic import write_text_atomic
from chestlens.evaluate.results import BootstrapInfo
from chestlens.rendering import render
from chestlens.strict import StrictModel

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


class Document(StrictModel):
    """The common part of ``report.json``: what was evaluated on what; subclasses add the metrics."""

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


def _run_settings(document: Document, bootstrap: BootstrapInfo) -> dict[str, str]:
    """How the intervals were obtained, when and by which chestlens version (rows of the settings table)."""
    return {
        "bootstrap": f"{bootstrap.n_boot} resamples of {bootstrap.unit}s, {bootstrap.method} "
        f"{bootstrap.ci:.0%} CI, seed {bootstrap.seed}",
        "generated (UTC)": document.generated_utc,
        "chestlens version": document.chestlens_version,
    }


def figure_data(figures: Mapping[str, Path]) -> list[tuple[str, str]]:
    """``(name, base64 of the PNG file)`` of each figure, for embedding as a ``data:`` URI."""
    return [
        (name, base64.b64encode(Path(path).read_bytes()).decode("ascii")) for name, path in figures.items()
    ]


class Summary(Protocol):
    """What every evaluation result carries (classification and segmentation reports)."""

    warnings: list[str]
    bootstrap: BootstrapInfo


def page(
    template: str,
    document: Document,
    metrics: Summary,
    settings: Mapping[str, Any],
    definitions: Mapping[str, str],
    figures: Mapping[str, Path],
    **context: Any,
) -> str:
    """The whole HTML page of an evaluation from ``template`` (which extends ``_evaluation.html``):
    disclaimer, title, the template's lead, the warnings of ``metrics``, the ``settings`` (then the
    bootstrap, date and version), the template's sections, the model and data facts, the ``definitions``
    of the metrics, and the disclaimer again. ``context`` goes to the template as it is."""
    return render(
        template,
        title=document.title,
        disclaimer=document.disclaimer,
        document=document,
        warnings=metrics.warnings,
        settings={**settings, **_run_settings(document, metrics.bootstrap)},
        definitions=definitions,
        figures=figure_data(figures),
        **context,
    )
