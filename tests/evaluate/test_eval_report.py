"""Figures and the report files: PNGs, one self-contained HTML with the disclaimer, a round-tripping JSON."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.evaluate import (
    DecisionRule,
    ReportDocument,
    choose_threshold,
    evaluate_classifier,
    save_figures,
    write_report,
)
from chestlens.evaluate.report import render_html

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def written(tmp_path_factory, synthetic):
    p = synthetic(80, seed=6)
    p.sources = np.where(p.y == 0, "covid-hospital", p.sources)
    p.labels[1] = "<b>pneumonia</b>"  # must come out escaped
    rule = DecisionRule(thresholds=[choose_threshold(p.y == 0, p.probs[:, 0]).to_threshold("COVID-19")])
    report = evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, decision=rule, n_boot=50)
    out = tmp_path_factory.mktemp("report")
    figures = save_figures(report, p.y, p.probs, out / "figures")
    paths = write_report(
        report,
        figures,
        out,
        title="Test evaluation",
        model_info={"bundle": Path("/models/x"), "homepage": "https://example.org", "epochs": np.int64(3)},
        data_info={"split": "test"},
    )
    return report, figures, paths, out


def test_figures_are_png_files(written):
    _, figures, _, out = written
    assert list(figures) == ["roc", "pr", "confusion_matrix", "reliability"]
    for path in figures.values():
        assert path.parent == out / "figures" and path.read_bytes().startswith(PNG)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # atomic: no temp file left


def test_html_is_self_contained_with_the_disclaimer_first(written):
    report, _, paths, _ = written
    text = paths["html"].read_text(encoding="utf-8")
    assert re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE) is None
    assert "<script" not in text and "<link" not in text
    assert text.count('src="data:image/png;base64,') == 4
    disclaimer = html.escape(RESEARCH_USE_DISCLAIMER)
    assert disclaimer in text and text.index(disclaimer) < text.index("<h1>")
    assert "&lt;b&gt;pneumonia&lt;/b&gt;" in text and "<b>pneumonia</b>" not in text
    for warning in report.warnings:
        assert html.escape(warning) in text
    assert 'class="warnings"' in text and "Operating points" in text and "ECE" in text
    assert "Source: covid-hospital" in text


def test_json_round_trips(written):
    report, _, paths, out = written
    document = ReportDocument.model_validate_json(paths["json"].read_text())
    assert document.metrics == report
    assert document.disclaimer == RESEARCH_USE_DISCLAIMER and document.title == "Test evaluation"
    assert document.model == {"bundle": "/models/x", "homepage": "https://example.org", "epochs": 3}
    assert document.figures["roc"] == "figures/roc.png" and (out / document.figures["roc"]).is_file()


def test_every_text_of_the_page_is_escaped_like_html_escape(written):
    _, _, paths, _ = written
    document = ReportDocument.model_validate_json(paths["json"].read_text())
    nasty = "<script>alert('x')</script> & \"quoted\""
    page = render_html(document.model_copy(update={"title": nasty, "data": {nasty: nasty}}), {})
    assert page.count(html.escape(nasty)) == 4 and "<script" not in page  # title, heading, key and value
