"""What the headline output means, in one line, from the bundle's own within-source figures."""

from __future__ import annotations

from pathlib import Path

from chestlens.models.catalog import resolve_bundle
from chestlens.models.meaning import output_meaning
from chestlens.models.spec import read_spec

README = Path(__file__).resolve().parents[2] / "README.md"


def _with_within_source(spec, value, low, high):
    entry = {
        "question": "COVID-19 vs rest",
        "pooled": {"value": value, "low": low, "high": high},
        "strata": [{"stratum": "siteA"}],
    }
    return spec.model_copy(update={"metrics": {"test": {"within_source": [entry]}}})


def test_the_shipped_screener_says_it_is_not_shown_to_beat_chance_inside_one_source():
    spec = read_spec(resolve_bundle("xray3-screener"))
    meaning = output_meaning(spec)
    within = spec.metrics["test"]["within_source"][0]["pooled"]
    assert meaning.startswith("What the COVID-19 output means: inside one source (ieee8023)")
    assert f"{within['value']:.2f} [{within['low']:.2f}, {within['high']:.2f}]" in meaning
    assert "not shown to tell COVID-19 from the other findings better than chance" in meaning
    assert "never a diagnosis" in meaning and "\n" not in meaning


def test_the_statement_follows_the_figures():
    spec = read_spec(resolve_bundle("xray3-screener"))
    better = output_meaning(_with_within_source(spec, 0.81, 0.7, 0.9))
    assert "inside one source (siteA) its test AUC is 0.81 [0.70, 0.90], better than chance" in better
    assert "not shown" in output_meaning(_with_within_source(spec, 0.81, 0.5, 0.9))
    assert output_meaning(spec.model_copy(update={"metrics": {}})) is None  # nothing measured: no claim


def test_segmenters_have_none():
    assert output_meaning(read_spec(resolve_bundle("lungs-segmenter"))) is None


def test_the_readme_quick_start_quotes_the_shipped_statement():
    """The README carries the shipped screener's own statement; a new model must update it."""
    meaning = output_meaning(read_spec(resolve_bundle("xray3-screener")))
    quoted = [line.removeprefix(">").strip() for line in README.read_text(encoding="utf-8").splitlines()]
    assert " ".join(meaning.split()) in " ".join(" ".join(quoted).split())
