"""Within-source AUC: does the model rank disease above its absence *inside* one source?

A pooled AUC over several hospitals counts every (positive, negative) pair, including pairs whose two
images come from different sources. Where a class comes from one source only (children's pneumonia
from one hospital, COVID-19 from papers), those pairs can be ranked by source alone, and a model that
tells hospitals apart scores well without looking at the lungs (DeGrave et al., Nat Mach Intell 2021).

The within-source AUC counts only pairs whose two images share a *stratum* (a source, or a source and
view where a source needs it, e.g. Actualmed, whose COVID-19 images are mostly AP and negatives mostly
PA). It is the fraction of such pairs ranked correctly (ties one half), i.e. the per-stratum AUCs
averaged with weights ``n_pos * n_neg``. Strata holding only one side of a question give no pairs and
are listed as excluded. The confidence interval is a percentile interval over patient resamples (the
evaluation's :mod:`~chestlens.evaluate.bootstrap`).

Binary questions of a task with labels ``(c_0, ..., c_K)``:

* ``c_k vs rest`` for every class, scored by ``p(c_k)``;
* ``c_a vs c_b`` for every pair of classes, on the images of those two classes only, scored by
  ``log p(c_a) - log p(c_b)`` (the difference of the two logits).

For xray3 that gives "COVID-19 vs rest" (the headline) and "pneumonia vs normal" among others.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from itertools import combinations

import numpy as np
from pydantic import TypeAdapter

from chestlens.evaluate.bootstrap import Estimate, bootstrap, estimate
from chestlens.evaluate.metrics import TiedScores, weighted_pair_counts
from chestlens.strict import StrictModel

#: Sources whose images are split by view before pairing (view confounded with class inside them).
VIEW_STRATIFIED_SOURCES = frozenset({"actualmed"})
_EPS = 1e-12


class StratumAUC(StrictModel):
    """One stratum's share of a within-source AUC (counts are images)."""

    stratum: str
    n_positive: int
    n_negative: int
    auc: Estimate


class WithinSourceAUC(StrictModel):
    """A binary question's AUC over same-stratum pairs, with the per-stratum AUCs it pools.

    Attributes:
        question: e.g. ``"COVID-19 vs rest"`` or ``"pneumonia vs normal"``.
        pooled: AUC over all same-stratum pairs, patient-bootstrap CI.
        n_pairs: number of (positive, negative) same-stratum pairs on the data.
        strata: the strata that hold both sides, each with its own AUC and CI.
        excluded: strata holding only one side (they add no pairs).
    """

    question: str
    pooled: Estimate
    n_pairs: int
    strata: list[StratumAUC]
    excluded: list[str]


#: Reads and writes lists of results as plain JSON values (as stored in a bundle's ``metrics``).
WITHIN_SOURCE_LIST = TypeAdapter(list[WithinSourceAUC])


def strata_of(
    sources: Sequence[str],
    views: Sequence[str | None] | None = None,
    by_view: Collection[str] = VIEW_STRATIFIED_SOURCES,
) -> np.ndarray:
    """Stratum name per image ``(N,)``: the source, or ``"source / view"`` for sources in ``by_view``."""
    views = views if views is not None else [None] * len(sources)
    return np.asarray(
        [
            f"{source} / {view or 'unknown view'}" if source in by_view else source
            for source, view in zip(sources, views, strict=True)
        ]
    )


def binary_questions(labels: Sequence[str]) -> list[tuple[str, int, int | None]]:
    """``(name, positive class, negative class or None for rest)`` for every question of a task."""
    rest = [(f"{label} vs rest", k, None) for k, label in enumerate(labels)]
    pairs = [(f"{labels[a]} vs {labels[b]}", a, b) for a, b in combinations(range(len(labels)), 2)]
    return rest + pairs if len(labels) > 2 else rest[:1]


def headline_questions(n_classes: int) -> list[tuple[int, int | None]]:
    """The questions that model selection averages: ``(positive, negative or None for rest)``.

    The first class against the rest (COVID-19 vs rest for xray3) and, with three or more classes, the
    last two against each other (pneumonia vs normal).
    """
    return [(0, None)] + ([(n_classes - 2, n_classes - 1)] if n_classes > 2 else [])


def headline_score(results: Sequence[WithinSourceAUC], labels: Sequence[str]) -> float:
    """Mean pooled within-source AUC of :func:`headline_questions` over ``results`` (NaN if none)."""
    names = {
        f"{labels[p]} vs {'rest' if n is None else labels[n]}" for p, n in headline_questions(len(labels))
    }
    values = [r.pooled.value for r in results if r.question in names and r.pooled.value is not None]
    return float(np.mean(values)) if values else float("nan")


def question_data(
    targets: np.ndarray, probs: np.ndarray, positive: int, negative: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keep mask (N,), positive indicator (M,), score (M,))`` of one binary question."""
    targets = np.asarray(targets)
    if negative is None:
        keep = np.ones(targets.shape, dtype=bool)
        score = probs[:, positive]
    else:
        keep = (targets == positive) | (targets == negative)
        score = np.log(probs[keep, positive] + _EPS) - np.log(probs[keep, negative] + _EPS)
    return keep, targets[keep] == positive, np.asarray(score, dtype=np.float64)


def _stratum_counts(
    weights: np.ndarray, positive: np.ndarray, scores: np.ndarray, members: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Correct and total pairs per stratum under weights ``(B, N)``: two arrays ``(B, S)``."""
    correct, total = [], []
    for index in members:
        c, t = weighted_pair_counts(weights[:, index], TiedScores.build(positive[index], scores[index]))
        correct.append(c)
        total.append(t)
    return np.stack(correct, axis=1), np.stack(total, axis=1)


def within_source_value(positive: np.ndarray, scores: np.ndarray, strata: Sequence[str]) -> float:
    """The pooled within-source AUC on the data (no CI); NaN when no stratum holds both sides.

    Cheap enough for model selection at every epoch.
    """
    positive = np.asarray(positive, dtype=bool)
    strata = np.asarray(strata)
    members = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    correct, total = _stratum_counts(np.ones((1, positive.size)), positive, np.asarray(scores), members)
    return float(correct.sum() / total.sum()) if total.sum() > 0 else float("nan")


def within_source_auc(
    positive: np.ndarray,
    scores: np.ndarray,
    strata: Sequence[str],
    patient_ids: Sequence[str],
    *,
    question: str,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> WithinSourceAUC:
    """Pooled within-source AUC with per-stratum AUCs, all with patient-bootstrap CIs.

    Args:
        positive: bool ``(N,)``, the positive side of the question.
        scores: ``(N,)``, higher means more likely positive.
        strata: ``(N,)`` stratum per image (:func:`strata_of`).
        patient_ids: ``(N,)`` patient group per image (resampled together).
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    strata = np.asarray(strata)
    names = [str(s) for s in np.unique(strata)]
    both = [s for s in names if positive[strata == s].any() and (~positive[strata == s]).any()]
    excluded = [s for s in names if s not in both]
    if not both:
        reason = "no stratum holds both sides of the question"
        return WithinSourceAUC(
            question=question,
            pooled=Estimate(value=None, reason=reason),
            n_pairs=0,
            strata=[],
            excluded=excluded,
        )
    members = [np.flatnonzero(strata == s) for s in both]
    point_correct, point_total = _stratum_counts(np.ones((1, positive.size)), positive, scores, members)

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        correct, total = _stratum_counts(weights, positive, scores, members)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"pooled": correct.sum(1) / total.sum(1), "strata": correct / total}

    samples = bootstrap(statistic, np.asarray(patient_ids), n_boot, seed) if n_boot > 0 else None
    pooled_value = point_correct.sum() / point_total.sum()
    rows = [
        StratumAUC(
            stratum=name,
            n_positive=int(positive[index].sum()),
            n_negative=int((~positive[index]).sum()),
            auc=estimate(
                point_correct[0, j] / point_total[0, j],
                None if samples is None else samples["strata"][:, j],
                ci,
            ),
        )
        for j, (name, index) in enumerate(zip(both, members, strict=True))
    ]
    return WithinSourceAUC(
        question=question,
        pooled=estimate(pooled_value, None if samples is None else samples["pooled"], ci),
        n_pairs=int(point_total.sum()),
        strata=rows,
        excluded=excluded,
    )


def within_source_report(
    targets: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    strata: Sequence[str],
    patient_ids: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> list[WithinSourceAUC]:
    """Within-source AUC of every binary question of a task (:func:`binary_questions`).

    Args:
        targets: int ``(N,)`` true class indices; probs: ``(N, K)`` calibrated probabilities.
    """
    strata = np.asarray(strata)
    patient_ids = np.asarray(patient_ids)
    results = []
    for name, pos, neg in binary_questions(labels):
        keep, positive, score = question_data(targets, probs, pos, neg)
        results.append(
            within_source_auc(
                positive,
                score,
                strata[keep],
                patient_ids[keep],
                question=name,
                n_boot=n_boot,
                seed=seed,
                ci=ci,
            )
        )
    return results
