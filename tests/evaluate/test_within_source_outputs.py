"""The evaluation outputs lead with the within-source AUCs: report JSON/HTML, bundle metrics, terminal
summary and model card; pooled AUCs stay, labelled as including between-source pairs."""

from __future__ import annotations

import html
import json

import numpy as np
import pytest

from chestlens.evaluate import ReportDocument, evaluate_classifier, write_report
from chestlens.evaluate.bundle_eval import metrics_summary
from chestlens.evaluate.kinds import EVALUATIONS
from chestlens.evaluate.model_card import render_model_card
from chestlens.evaluate.results import POOLED_AUC_SCOPE
from chestlens.evaluate.within_source import WITHIN_SOURCE_LIST, strata_of, within_source_report
from chestlens.models.catalog import resolve_bundle
from chestlens.models.spec import BundleSpec, read_spec

N_BOOT = 40


def _with_actualmed(p):
    """Source "actualmed" (views AP/PA) beside "a"; "papers" holds COVID-19 images only."""
    n = p.y.size
    p.sources = np.where(np.arange(n) % 3 == 0, "actualmed", p.sources)
    p.sources = np.where((p.y == 0) & (np.arange(n) % 5 == 1), "papers", p.sources)
    views = np.where(np.arange(n) % 2 == 0, "AP", "PA").astype(object)
    return p, views


@pytest.fixture(scope="module")
def evaluated(synthetic):
    p, views = _with_actualmed(synthetic(150, seed=8))
    report = evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, views=views, n_boot=N_BOOT)
    return p, views, report


@pytest.fixture(scope="module")
def written(evaluated, tmp_path_factory):
    _, _, report = evaluated
    out = tmp_path_factory.mktemp("within-report")
    paths = write_report(report, {}, out, title="Within", model_info={}, data_info={})
    return report, paths


def test_report_holds_the_within_source_report_of_its_sources_and_views(evaluated):
    p, views, report = evaluated
    expected = within_source_report(
        p.y, p.probs, p.labels, strata_of(p.sources, views), p.patients, n_boot=N_BOOT, seed=0
    )
    assert report.within_source == expected
    strata = {s.stratum for r in report.within_source for s in r.strata}
    assert {"actualmed / AP", "actualmed / PA", "a"} <= strata and "actualmed" not in strata
    assert report.within_source[0].excluded == ["papers"]  # COVID-19 only: no pair inside it
    assert report.pooled_auc_scope == POOLED_AUC_SCOPE == "includes between-source pairs"


def test_no_within_source_without_sources_and_views_must_match(synthetic):
    p = synthetic(60, seed=1)
    assert evaluate_classifier(p.y, p.probs, p.labels, p.patients, n_boot=0).within_source == []
    with pytest.raises(ValueError, match="views"):
        evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, views=["AP"], n_boot=0)


def test_warning_when_no_source_holds_both_sides(synthetic):
    p = synthetic(120, seed=3, sources=("x", "y"))
    p.sources = np.where(p.y == 0, "covid-hospital", p.sources)
    report = evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, n_boot=0)
    covid = next(r for r in report.within_source if r.question == "COVID-19 vs rest")
    assert covid.pooled.value is None
    warned = [w for w in report.warnings if w.startswith("COVID-19 vs rest: no source holds both sides")]
    assert len(warned) == 1 and "covid-hospital" in warned[0]
    assert not any(w.startswith("pneumonia vs normal:") for w in report.warnings)  # measurable in x, y


def test_json_leads_with_within_source_and_reads_old_reports(written):
    report, paths = written
    metrics = json.loads(paths["json"].read_text())["metrics"]
    assert list(metrics)[:2] == ["disclaimer", "within_source"]
    assert ReportDocument.model_validate_json(paths["json"].read_text()).metrics == report
    del metrics["within_source"], metrics["pooled_auc_scope"]  # a report written before them
    old = type(report).model_validate(metrics)
    assert old.within_source == [] and old.pooled_auc_scope == POOLED_AUC_SCOPE


def test_html_leads_with_within_source_and_labels_pooled_aucs(written):
    report, paths = written
    text = paths["html"].read_text()
    lead = text.index("Within-source AUC (read this first)")
    assert text.index("<h1>") < lead < text.index("Warnings") < text.index("Pooled over all sources")
    assert f"Pooled over all sources (every AUC {POOLED_AUC_SCOPE})" in text
    for r in report.within_source:
        assert html.escape(r.question) in text
    assert "actualmed / AP" in text and text.index("actualmed / AP") < text.index("Pooled over all sources")


def test_summary_and_terminal_lead_with_within_source(evaluated):
    _, _, report = evaluated
    summary = metrics_summary(report, report.labels)
    assert next(iter(summary)) == "within_source"
    assert WITHIN_SOURCE_LIST.validate_python(json.loads(json.dumps(summary))["within_source"]) == (
        report.within_source
    )
    out = "\n".join(EVALUATIONS.get("classifier").summary_lines(summary))
    first = report.within_source[0]
    assert f"{first.question}: {first.pooled.value:.3f}" in out
    assert "actualmed / PA" in out and "left out (one side only): papers" in out
    assert out.index("within-source AUC") < out.index(f"pooled over sources ({POOLED_AUC_SCOPE})")


def _card(spec: BundleSpec, written) -> str:
    _, paths = written
    return render_model_card(spec, ReportDocument.model_validate_json(paths["json"].read_text()))


def test_model_card_puts_within_source_and_the_audit_first(written, shared_audit, tiny_classifier_bundle):
    report, _ = written
    metrics = {"test": metrics_summary(report, report.labels), "shortcut_audit": shared_audit}
    card = _card(read_spec(tiny_classifier_bundle(metrics=metrics)), written)
    order = [
        "## Within-source AUC (test split; read this first)",
        "## Shortcut audit",
        "## Model\n",
        "## Pooled test results, all sources together (every AUC includes between-source pairs",
        "## Per-source results",
    ]
    positions = [card.index(heading) for heading in order]
    assert positions == sorted(positions)
    first = report.within_source[0]
    assert f"| {first.question} | {first.pooled.value:.3f} [" in card
    assert "actualmed / PA" in card[: positions[1]]


def test_model_card_of_a_bundle_tested_before_within_source(written, tiny_classifier_bundle):
    card = _card(read_spec(tiny_classifier_bundle(metrics={"test": {"n_images": 3}})), written)
    assert "Not recorded: this bundle was tested before within-source AUCs" in card
    assert "Not run yet: `chestlens audit BUNDLE --save`" in card
    assert card.index("## Shortcut audit") < card.index("## Model\n")


@pytest.fixture(scope="module")
def shared_audit():
    """The shortcut audit stored in the shipped screener (made before within-source AUCs and the probe)."""
    return read_spec(resolve_bundle("xray3-screener")).metrics["shortcut_audit"]
