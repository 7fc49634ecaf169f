"""Within-source AUC (same-source pairs only) and the source probe on classifier features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from chestlens.evaluate.source_probe import source_probe
from chestlens.evaluate.within_source import (
    binary_questions,
    question_data,
    strata_of,
    within_source_auc,
    within_source_report,
    within_source_value,
)


def _scored(
    n: int, source: str, rate: float, signal: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``n`` images of one source, a share ``rate`` positive, scores ``signal * positive + noise``."""
    positive = rng.random(n) < rate
    return {
        "positive": positive,
        "scores": signal * positive + rng.normal(size=n),
        "strata": np.full(n, source),
    }


def _join(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    joined["patients"] = np.char.add("p", (np.arange(joined["positive"].size) // 2).astype(str))
    return joined


@pytest.fixture(scope="module")
def three_sources() -> dict[str, np.ndarray]:
    """Sources with different class mixes and different signal strengths (patients of two images)."""
    rng = np.random.default_rng(0)
    return _join(
        _scored(120, "a", 0.2, 2.0, rng), _scored(80, "b", 0.5, 0.5, rng), _scored(60, "c", 0.7, 1.0, rng)
    )


def test_pooled_value_is_the_pair_weighted_mean_of_per_source_sklearn_aucs(three_sources):
    d = three_sources
    result = within_source_auc(d["positive"], d["scores"], d["strata"], d["patients"], question="q", n_boot=0)
    aucs, weights = [], []
    for row, source in zip(result.strata, ("a", "b", "c"), strict=True):
        inside = d["strata"] == source
        pos = d["positive"][inside]
        aucs.append(roc_auc_score(pos, d["scores"][inside]))
        weights.append(pos.sum() * (~pos).sum())
        assert row.stratum == source and row.auc.value == pytest.approx(aucs[-1], abs=1e-12)
        assert (row.n_positive, row.n_negative) == (pos.sum(), (~pos).sum())
    assert result.pooled.value == pytest.approx(np.average(aucs, weights=weights), abs=1e-12)
    assert result.n_pairs == sum(weights)
    # the sources differ in signal, so the unweighted mean is a different number
    assert abs(np.mean(aucs) - result.pooled.value) > 0.01
    assert within_source_value(d["positive"], d["scores"], d["strata"]) == pytest.approx(result.pooled.value)


def test_cross_source_pairs_never_count():
    """A score that only names the source: pooled AUC high, within-source AUC exactly one half."""
    positive = np.r_[np.ones(90, bool), np.zeros(10, bool), np.ones(10, bool), np.zeros(90, bool)]
    strata = np.repeat(["covid-hospital", "children"], 100)
    scores = (strata == "covid-hospital").astype(float)
    patients = np.arange(200).astype(str)
    assert roc_auc_score(positive, scores) > 0.89
    result = within_source_auc(positive, scores, strata, patients, question="q", n_boot=50)
    assert result.pooled.value == 0.5
    assert [row.auc.value for row in result.strata] == [0.5, 0.5]
    assert result.n_pairs == 90 * 10 + 10 * 90


def test_strata_with_one_side_only_are_excluded(three_sources):
    d = three_sources
    only_positive = np.full(30, "papers")
    positive = np.r_[d["positive"], np.ones(30, bool)]
    scores = np.r_[d["scores"], np.full(30, 10.0)]  # would rank above every negative if it counted
    strata = np.r_[d["strata"], only_positive]
    patients = np.r_[d["patients"], np.char.add("q", np.arange(30).astype(str))]
    with_papers = within_source_auc(positive, scores, strata, patients, question="q", n_boot=0)
    without = within_source_auc(
        d["positive"], d["scores"], d["strata"], d["patients"], question="q", n_boot=0
    )
    assert with_papers.excluded == ["papers"]
    assert [row.stratum for row in with_papers.strata] == ["a", "b", "c"]
    assert with_papers.pooled.value == without.pooled.value and with_papers.n_pairs == without.n_pairs


def test_no_stratum_with_both_sides_is_undefined_with_a_reason():
    positive = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    strata = np.repeat(["covid-hospital", "children"], 5)
    result = within_source_auc(positive, np.arange(10.0), strata, np.arange(10).astype(str), question="q")
    assert result.pooled.value is None and "no stratum" in result.pooled.reason
    assert result.n_pairs == 0 and result.strata == [] and result.excluded == ["children", "covid-hospital"]


def test_actualmed_is_split_by_view():
    strata = strata_of(["actualmed", "actualmed", "actualmed", "nih"], ["AP", "PA", None, "AP"])
    assert strata.tolist() == ["actualmed / AP", "actualmed / PA", "actualmed / unknown view", "nih"]
    assert strata_of(["actualmed", "nih"]).tolist() == ["actualmed / unknown view", "nih"]
    # COVID-19 mostly AP, negatives mostly PA; a score that reads the view only
    views = np.repeat(["AP", "PA"], 25)
    positive = np.r_[np.ones(20, bool), np.zeros(5, bool), np.ones(5, bool), np.zeros(20, bool)]
    scores = (views == "AP").astype(float)
    sources = ["actualmed"] * 50
    patients = np.arange(50).astype(str)
    by_view = within_source_auc(positive, scores, strata_of(sources, views), patients, question="q", n_boot=0)
    by_source = within_source_auc(
        positive, scores, strata_of(sources, views, by_view=()), patients, question="q"
    )
    assert (
        by_source.pooled.value == pytest.approx(roc_auc_score(positive, scores))
        and by_source.pooled.value > 0.75
    )
    assert by_view.pooled.value == 0.5
    assert [row.stratum for row in by_view.strata] == ["actualmed / AP", "actualmed / PA"]


def test_bootstrap_interval_brackets_the_value_and_is_deterministic(three_sources):
    d = three_sources

    def run(seed: int):
        return within_source_auc(
            d["positive"], d["scores"], d["strata"], d["patients"], question="q", n_boot=200, seed=seed
        )

    first, again, other = run(3), run(3), run(4)
    assert first == again
    assert first.pooled.low != other.pooled.low
    for e in [first.pooled, *(row.auc for row in first.strata)]:
        assert e.low < e.value < e.high and e.n_valid + e.n_skipped == 200
    assert first.pooled.high - first.pooled.low < first.strata[1].auc.high - first.strata[1].auc.low


def test_pairwise_question_scores_the_log_probability_difference():
    labels = ["COVID-19", "pneumonia", "normal"]
    assert [q[0] for q in binary_questions(labels)] == [
        "COVID-19 vs rest",
        "pneumonia vs rest",
        "normal vs rest",
        "COVID-19 vs pneumonia",
        "COVID-19 vs normal",
        "pneumonia vs normal",
    ]
    assert binary_questions(["normal", "pneumonia"]) == [("normal vs rest", 0, None)]
    # a pneumonia image with a LOWER p(pneumonia) than a normal image, but a higher p(pneumonia)/p(normal)
    targets = np.array([1, 2, 0])
    probs = np.array([[0.7, 0.2, 0.1], [0.0, 0.3, 0.7], [0.9, 0.05, 0.05]])
    keep, positive, score = question_data(targets, probs, 1, 2)
    assert keep.tolist() == [True, True, False] and positive.tolist() == [True, False]
    assert score == pytest.approx([np.log(0.2 / 0.1), np.log(0.3 / 0.7)], abs=1e-9)
    (result,) = [
        r
        for r in within_source_report(targets, probs, labels, ["s"] * 3, ["a", "b", "c"], n_boot=0)
        if r.question == "pneumonia vs normal"
    ]
    assert result.pooled.value == 1.0  # p(pneumonia) alone would rank them the wrong way round (AUC 0)
    assert roc_auc_score([True, False], probs[:2, 1]) == 0.0


def test_report_asks_every_question_on_its_own_images(synthetic):
    p = synthetic(150, seed=2)
    report = within_source_report(p.y, p.probs, p.labels, p.sources, p.patients, n_boot=0)
    assert [r.question for r in report] == [q[0] for q in binary_questions(p.labels)]
    pneumonia_normal = report[-1]
    pairs = sum(
        ((p.y == 1) & (p.sources == s)).sum() * ((p.y == 2) & (p.sources == s)).sum() for s in ("a", "b")
    )
    assert pneumonia_normal.n_pairs == pairs
    assert report[0].n_pairs == sum(
        ((p.y == 0) & (p.sources == s)).sum() * ((p.y != 0) & (p.sources == s)).sum() for s in ("a", "b")
    )


def _probe_data() -> tuple[np.ndarray, np.ndarray]:
    """Three sources of 100, 60 and 40 images; patients of two images (one source each)."""
    sources = np.repeat(["a", "b", "c"], [100, 60, 40])
    groups = np.char.add(sources, (np.arange(200) // 2).astype(str))
    return sources, groups


def test_probe_on_random_features_stays_near_the_majority_rate():
    rng = np.random.default_rng(1)
    sources, groups = _probe_data()
    probe = source_probe(rng.normal(size=(200, 16)), sources, groups)
    assert probe.majority_rate == 0.5 and probe.n_sources == 3 and probe.folds == 5
    assert probe.accuracy is not None and abs(probe.excess) < 0.1


def test_probe_reads_a_source_encoded_in_the_features():
    rng = np.random.default_rng(1)
    sources, groups = _probe_data()
    features = rng.normal(size=(200, 16))
    features[:, :3] += 3.0 * (sources[:, None] == np.array(["a", "b", "c"]))
    probe = source_probe(features, sources, groups)
    assert probe.accuracy > 0.95 and probe.excess == pytest.approx(probe.accuracy - 0.5)


def test_probe_needs_two_sources():
    probe = source_probe(np.zeros((6, 2)), ["a"] * 6, list("abcdef"))
    assert probe.accuracy is None and probe.reason and probe.majority_rate == 1.0
