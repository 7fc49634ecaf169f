"""Evaluate a classifier from arrays: metrics with patient-bootstrap CIs, per source, with warnings.

Point estimates use scikit-learn (``confusion_matrix``, ``roc_auc_score``, ``average_precision_score``,
``accuracy_score``, ``classification_report``, ``brier_score_loss``); specificity, NPV and the
calibration errors are derived by hand (:mod:`~chestlens.evaluate.metrics`,
:mod:`~chestlens.evaluate.calibration`). The bootstrap recomputes every metric on each patient resample
with the weighted vectorised forms, which equal the scikit-learn numbers on the resampled images.

Overall definitions: accuracy = fraction of images whose decided class is the true class; balanced
accuracy = mean sensitivity over the classes present (= ``sklearn.metrics.balanced_accuracy_score``);
macro AUC = unweighted mean of the one-vs-rest AUCs of all classes (= ``roc_auc_score(...,
multi_class="ovr", average="macro")``), undefined when any class lacks positives or negatives. These
pooled AUCs count pairs of images from different sources; with sources given, the report leads with the
within-source AUC of every binary question (:func:`~chestlens.evaluate.within_source.within_source_report`),
which counts same-source pairs only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

from chestlens.evaluate.bootstrap import Estimate, Statistic, bootstrap, estimate
from chestlens.evaluate.calibration import (
    DEFAULT_BINS,
    brier_score,
    expected_calibration_error,
    reliability_bins,
    top_label_bins,
    weighted_calibration_error,
)
from chestlens.evaluate.metrics import (
    RATES,
    TiedScores,
    binary_auc,
    binary_average_precision,
    confusion_rates,
    weighted_auc_ap,
)
from chestlens.evaluate.operating_point import DecisionRule
from chestlens.evaluate.results import (
    BootstrapInfo,
    CalibrationSummary,
    ClassificationReport,
    ClassMetrics,
    MetricSet,
    OperatingPointResult,
)
from chestlens.evaluate.within_source import (
    WithinSourceAUC,
    binary_questions,
    strata_of,
    within_source_report,
)

#: Warn when a class has fewer images than this.
MIN_CLASS_IMAGES = 30
#: Warn that CIs are unreliable when a class has fewer patients than this ...
MIN_CLASS_PATIENTS = 10
#: ... or the whole set has fewer patients than this.
MIN_PATIENTS = 30
#: Warn when more than this fraction of resamples had a metric undefined (skipped).
MAX_SKIPPED_FRACTION = 0.05

_OP_RATES = ("sensitivity", "specificity", "ppv", "npv")
_Estimator = Callable[..., Estimate]


def _cells(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """One-hot ``(N, n*n)`` of each image's confusion-matrix cell (row true, column predicted)."""
    cells = np.zeros((true.size, n * n))
    cells[np.arange(true.size), true * n + pred] = 1.0
    return cells


def classifier_statistic(
    y: np.ndarray, pred: np.ndarray, probs: np.ndarray, thresholds: Sequence[tuple[int, float]], n_bins: int
) -> Statistic:
    """Every metric of a :class:`MetricSet` as a function of image weights ``(B, N)``.

    Returns arrays ``(B,)`` (``accuracy``, ``balanced_accuracy``, ``macro_auc``, ``ece``, ``brier``,
    ``op{j}_{rate}`` for threshold ``j``) or ``(B, C)`` (the per-class rates, ``auc``,
    ``average_precision``); NaN where undefined. With one row of ones it gives the point estimates.
    """
    n_classes = probs.shape[1]
    cells = _cells(y, pred, n_classes)
    present = np.bincount(y, minlength=n_classes) > 0
    tied = [TiedScores.build(y == c, probs[:, c]) for c in range(n_classes)]
    confidence, index = top_label_bins(probs, n_bins)
    correct = probs.argmax(axis=1) == y
    brier = ((probs - np.eye(n_classes)[y]) ** 2).sum(axis=1)
    op_cells = [_cells((y == c).astype(int), (probs[:, c] >= t).astype(int), 2) for c, t in thresholds]

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        total = weights.sum(axis=1)
        cm = (weights @ cells).reshape(-1, n_classes, n_classes)
        out: dict[str, np.ndarray] = dict(confusion_rates(cm))
        out["accuracy"] = np.trace(cm, axis1=1, axis2=2) / total
        out["balanced_accuracy"] = out["sensitivity"][:, present].mean(axis=1)
        auc, ap = zip(*(weighted_auc_ap(weights, t) for t in tied), strict=True)
        out["auc"], out["average_precision"] = np.stack(auc, axis=1), np.stack(ap, axis=1)
        out["macro_auc"] = out["auc"].mean(axis=1)
        out["ece"] = weighted_calibration_error(weights, confidence, correct, index, n_bins)[0]
        out["brier"] = (weights @ brier) / total
        for j, op in enumerate(op_cells):
            rates = confusion_rates((weights @ op).reshape(-1, 2, 2))
            out.update({f"op{j}_{name}": rates[name][:, 1] for name in _OP_RATES})
        return out

    return statistic


def _rate_reasons(label: str, decided: str = "decided as") -> dict[str, str]:
    return {
        "sensitivity": f"no image of class {label}",
        "specificity": f"every image is of class {label}",
        "ppv": f"no image {decided} {label}",
        "npv": f"every image {decided} {label}",
        "f1": f"no image of, or {decided}, class {label}",
    }


def _auc_reason(label: str, n_positive: int) -> str:
    return f"no image of class {label}" if n_positive == 0 else f"every image is of class {label}"


def _operating_points(
    rule: DecisionRule, indices: list[int], y: np.ndarray, probs: np.ndarray, est: _Estimator
) -> list[OperatingPointResult]:
    results = []
    for j, (c, entry) in enumerate(zip(indices, rule.thresholds, strict=True)):
        flagged = probs[:, c] >= entry.threshold
        rates = confusion_rates(confusion_matrix(y == c, flagged, labels=[False, True]))
        reasons = _rate_reasons(entry.label, "flagged as")
        results.append(
            OperatingPointResult(
                **entry.model_dump(),
                n_flagged=int(flagged.sum()),
                **{name: est(f"op{j}_{name}", rates[name][1], reasons[name]) for name in _OP_RATES},
            )
        )
    return results


def _metric_set(
    y: np.ndarray,
    probs: np.ndarray,
    pred: np.ndarray,
    patients: np.ndarray,
    labels: Sequence[str],
    rule: DecisionRule,
    *,
    n_boot: int,
    seed: int,
    ci: float,
    n_bins: int,
) -> MetricSet:
    """All metrics of one image set; ``y``/``pred``/``patients`` ``(N,)``, ``probs`` ``(N, C)``."""
    n_classes = len(labels)
    indices = rule.class_indices(labels)
    thresholds = [(c, t.threshold) for c, t in zip(indices, rule.thresholds, strict=True)]
    statistic = classifier_statistic(y, pred, probs, thresholds, n_bins)
    boot = bootstrap(statistic, patients, n_boot, seed) if n_boot > 0 else {}

    def est(name: str, value: float, reason: str | None = None, column: int | None = None) -> Estimate:
        samples = boot.get(name)
        if samples is not None and column is not None:
            samples = samples[:, column]
        return estimate(value, samples, ci, reason)

    cm = confusion_matrix(y, pred, labels=list(range(n_classes)))
    rates = confusion_rates(cm)
    counts = cm.sum(axis=1)
    per_class = []
    for c, label in enumerate(labels):
        reasons = _rate_reasons(label)
        per_class.append(
            ClassMetrics(
                label=label,
                n_images=int(counts[c]),
                n_patients=len(np.unique(patients[y == c])),
                n_predicted=int(cm[:, c].sum()),
                **{name: est(name, rates[name][c], reasons[name], c) for name in RATES},
                auc=est("auc", binary_auc(y == c, probs[:, c]), _auc_reason(label, int(counts[c])), c),
                average_precision=est(
                    "average_precision",
                    binary_average_precision(y == c, probs[:, c]),
                    reasons["sensitivity"],
                    c,
                ),
            )
        )
    undefined = [m.label for m in per_class if m.auc.value is None]
    macro = float(np.mean([m.auc.value for m in per_class])) if not undefined else float("nan")
    bins = reliability_bins(y, probs, n_bins)
    gaps = [
        abs(b.accuracy - b.mean_confidence)
        for b in bins
        if b.accuracy is not None and b.mean_confidence is not None
    ]
    report = classification_report(
        y, pred, labels=list(range(n_classes)), target_names=list(labels), output_dict=True, zero_division=0
    )
    return MetricSet(
        n_images=int(y.size),
        n_patients=len(np.unique(patients)),
        class_counts={label: int(n) for label, n in zip(labels, counts, strict=True)},
        accuracy=est("accuracy", float(accuracy_score(y, pred))),
        balanced_accuracy=est("balanced_accuracy", float(np.mean(rates["sensitivity"][counts > 0]))),
        macro_auc=est("macro_auc", macro, f"AUC undefined for class {', '.join(undefined)}"),
        per_class=per_class,
        confusion_matrix=cm.astype(int).tolist(),
        confusion_matrix_normalized=[
            [float(v) / float(n) if n else None for v in row] for row, n in zip(cm, counts, strict=True)
        ],
        classification_report=json.loads(json.dumps(report, default=float)),
        calibration=CalibrationSummary(
            n_bins=n_bins,
            ece=est("ece", expected_calibration_error(y, probs, n_bins)),
            mce=max(gaps) if gaps else None,
            brier=est("brier", brier_score(y, probs)),
            bins=bins,
        ),
        operating_points=_operating_points(rule, indices, y, probs, est),
    )


def _estimates(metrics: MetricSet) -> Iterator[tuple[str, Estimate]]:
    """Every estimate of a metric set with a readable name."""
    for name in ("accuracy", "balanced_accuracy", "macro_auc"):
        yield name, getattr(metrics, name)
    for m in metrics.per_class:
        for name in (*RATES, "auc", "average_precision"):
            yield f"{name} of {m.label}", getattr(m, name)
    yield "ECE", metrics.calibration.ece
    yield "Brier score", metrics.calibration.brier
    for op in metrics.operating_points:
        for name in _OP_RATES:
            yield f"{name} of {op.label} at threshold {op.threshold:.4g}", getattr(op, name)


def _unmeasurable_questions(overall: MetricSet, within: Sequence[WithinSourceAUC]) -> list[str]:
    """Warnings for the questions with both sides in the data but no source holding both (``within``:
    one result per :func:`binary_questions`, or none without source information)."""
    counts = np.asarray(list(overall.class_counts.values()))
    questions = binary_questions(list(overall.class_counts)) if within else []
    out = []
    for (question, positive, negative), result in zip(questions, within, strict=True):
        other = counts.sum() - counts[positive] if negative is None else counts[negative]
        if result.pooled.value is None and counts[positive] > 0 and other > 0:
            out.append(
                f"{question}: no source holds both sides, so its within-source AUC is undefined; its pooled "
                f"AUC can be earned by telling sources apart (sources: {', '.join(result.excluded)})."
            )
    return out


def _warnings(
    y: np.ndarray,
    labels: Sequence[str],
    sources: np.ndarray | None,
    overall: MetricSet,
    per_source: dict[str, MetricSet],
    within: Sequence[WithinSourceAUC],
    n_boot: int,
) -> list[str]:
    out = _unmeasurable_questions(overall, within)
    for m in overall.per_class:
        if m.n_images == 0:
            out.append(
                f"Class {m.label} has no image: its sensitivity, AUC and average precision are undefined."
            )
        elif m.n_images < MIN_CLASS_IMAGES:
            out.append(
                f"Class {m.label} has only {m.n_images} images (< {MIN_CLASS_IMAGES}): "
                "its metrics are imprecise."
            )
        if 0 < m.n_patients < MIN_CLASS_PATIENTS:
            out.append(
                f"Class {m.label} comes from only {m.n_patients} patients (< {MIN_CLASS_PATIENTS}): "
                "its confidence intervals are unreliable."
            )
    if overall.n_patients < MIN_PATIENTS:
        out.append(
            f"Only {overall.n_patients} patients (< {MIN_PATIENTS}): "
            "bootstrap confidence intervals are unreliable."
        )
    if sources is not None and len(np.unique(sources)) > 1:
        for c, label in enumerate(labels):
            origin = np.unique(sources[y == c])
            if origin.size == 1:
                out.append(
                    f"Class {label} comes from a single source ({origin[0]}): the model may be learning "
                    "the source (hospital, device, processing) rather than the disease; "
                    "compare per-source metrics."
                )
    for source, metrics in per_source.items():
        present = [label for label, n in metrics.class_counts.items() if n]
        if len(present) == 1:
            out.append(
                f"Source {source} contains only class {present[0]}: AUCs within this source are "
                "undefined and the source is confounded with the class."
            )
    skipped = [
        f"{name} ({e.n_skipped})"
        for name, e in _estimates(overall)
        if e.n_skipped > MAX_SKIPPED_FRACTION * n_boot
    ]
    if skipped:
        out.append(
            f"Degenerate resamples (metric undefined, skipped) out of {n_boot}: {'; '.join(skipped)}; "
            "those confidence intervals may be biased."
        )
    return out


def _check_per_image(name: str, values: Sequence[str | None] | None, n: int) -> np.ndarray | None:
    """``values`` as an array ``(n,)``, or None; raises when the length is not ``n``."""
    if values is None:
        return None
    array = np.asarray(values)
    if array.shape != (n,):
        raise ValueError(f"{name} must be (N,) = ({n},), got {array.shape}")
    return array


def _check(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    patient_ids: np.ndarray,
    sources: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] != len(labels) or len(labels) < 2:
        raise ValueError(
            "probs must be (N, C) with N > 0 and C = len(labels) >= 2, "
            f"got {probs.shape} and {len(labels)} labels"
        )
    n = probs.shape[0]
    y = np.asarray(y_true)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= probs.shape[1]:
        raise ValueError(
            f"y_true must be (N,) = ({n},) integers in [0, {probs.shape[1]}), got {y.dtype} {y.shape}"
        )
    if not np.isfinite(probs).all() or probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probs must be probabilities (rows summing to 1); use apply_temperature(logits, T)")
    patients = _check_per_image("patient_ids", patient_ids, n).astype(str)
    sources = _check_per_image("sources", sources, n)
    return y.astype(np.int64), probs, patients, None if sources is None else sources.astype(str)


def evaluate_classifier(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    patient_ids: np.ndarray,
    sources: np.ndarray | None = None,
    *,
    views: Sequence[str | None] | None = None,
    decision: DecisionRule | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    n_bins: int = DEFAULT_BINS,
    temperature: float | None = None,
) -> ClassificationReport:
    """Evaluate calibrated class probabilities against true classes, overall and per data source.

    Args:
        y_true: ``(N,)`` integer true classes in ``[0, C)``.
        probs: ``(N, C)`` calibrated probabilities (``apply_temperature(logits, T)`` with the bundle's T).
        labels: ``C`` class names, in column order.
        patient_ids: ``(N,)`` patient of each image; the bootstrap resamples patients, not images.
        sources: ``(N,)`` data source of each image, or ``None``; each source gets the same metrics, and
            the within-source AUCs (:attr:`ClassificationReport.within_source`) pair images of one source.
        views: ``(N,)`` projection of each image (``PA``, ``AP``, None when unknown) or ``None``: sources
            whose class depends on the view (:func:`~chestlens.evaluate.within_source.strata_of`) are split
            by it before pairing.
        decision: how probabilities become one class (default argmax); thresholded classes also get an
            operating-point section (binary ``p >= t`` metrics).
        n_boot: patient resamples for the percentile CIs (0: no CIs); ``seed`` makes them deterministic.
        ci: confidence level of the intervals.
        n_bins: equal-width bins of the top-label ECE and the reliability diagram.
        temperature: the temperature used to calibrate ``probs``, recorded in the report.
    """
    if not 0.0 < ci < 1.0 or n_boot < 0:
        raise ValueError(f"need 0 < ci < 1 and n_boot >= 0, got ci={ci}, n_boot={n_boot}")
    y, probs, patients, sources = _check(y_true, probs, labels, patient_ids, sources)
    views = _check_per_image("views", views, y.size)
    rule = decision or DecisionRule.argmax()
    pred = rule.predict(probs, labels)
    options = {"n_boot": n_boot, "seed": seed, "ci": ci, "n_bins": n_bins}
    overall = _metric_set(y, probs, pred, patients, labels, rule, **options)
    per_source: dict[str, MetricSet] = {}
    if sources is not None:
        for source in np.unique(sources):
            m = sources == source
            per_source[str(source)] = _metric_set(
                y[m], probs[m], pred[m], patients[m], labels, rule, **options
            )
    within = (
        []
        if sources is None
        else within_source_report(
            y, probs, labels, strata_of(sources, views), patients, n_boot=n_boot, seed=seed, ci=ci
        )
    )
    return ClassificationReport(
        within_source=within,
        labels=list(labels),
        decision=rule,
        decision_description=rule.describe(),
        temperature=temperature,
        bootstrap=BootstrapInfo(n_boot=n_boot, seed=seed, ci=ci),
        overall=overall,
        per_source=per_source,
        source_class_counts={s: m.class_counts for s, m in per_source.items()},
        warnings=_warnings(y, labels, sources, overall, per_source, within, n_boot),
    )
