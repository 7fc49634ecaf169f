"""Bootstrap over PATIENTS, vectorised as image weights.

One resample draws ``P`` patient ids with replacement from the ``P`` distinct ids; a patient drawn ``k``
times contributes every one of its images ``k`` times (its images always come together, never one by
one). Instead of building the resampled arrays, a resample is a weight vector over the ``N`` images
(``weight = k`` of the image's patient), and every statistic in :mod:`chestlens.evaluate` is a weighted
sum of per-image terms, which equals the statistic on the concatenated copies. ``B`` resamples are then a
``(B, N)`` weight matrix evaluated with array operations, in chunks that bound memory.

Confidence intervals are percentile intervals: for level ``ci`` the ``(1 - ci) / 2`` and
``(1 + ci) / 2`` quantiles (numpy's default linear interpolation) of the metric over the resamples in
which it is defined. Resamples in which it is undefined (e.g. a class has no image, so its AUC is 0/0)
are skipped and counted in :attr:`Estimate.n_skipped`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from chestlens.strict import StrictModel

#: A statistic maps image weights ``(B, N)`` to named arrays ``(B, ...)`` (NaN where undefined).
Statistic = Callable[[np.ndarray], Mapping[str, np.ndarray]]

#: Upper bound on the elements of one ``(chunk, N)`` weight matrix (32 MB of float64).
_CHUNK_ELEMENTS = 4_000_000


class Estimate(StrictModel):
    """A point estimate with its bootstrap percentile confidence interval.

    ``value`` is computed on all the data; ``low``/``high`` bound the interval (``None`` without a
    bootstrap or when fewer than two resamples had the metric defined). ``value`` is ``None`` when the
    metric is undefined on the data, with ``reason`` saying why.
    """

    value: float | None
    low: float | None = None
    high: float | None = None
    n_valid: int = 0
    n_skipped: int = 0
    reason: str | None = None


def patient_codes(patient_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Map patient ids ``(N,)`` to integer codes ``(N,)`` in ``[0, P)``; returns ``(codes, P)``."""
    _, codes = np.unique(np.asarray(patient_ids).astype(str), return_inverse=True)
    codes = codes.reshape(-1)
    return codes, int(codes.max()) + 1 if codes.size else 0


def resample_weights(patient_ids: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield image-weight matrices ``(b, N)`` (float64, integer valued) for ``n_boot`` patient resamples.

    Row ``r`` holds, for every image, how many times its patient was drawn in resample ``r``; all images
    of one patient share that weight. The chunks add up to ``n_boot`` rows; deterministic for a seed.
    """
    codes, n_patients = patient_codes(patient_ids)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(codes.size, n_patients, 1))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        draws = rng.integers(0, n_patients, size=(size, n_patients))
        draws += np.arange(size)[:, None] * n_patients
        counts = np.bincount(draws.ravel(), minlength=size * n_patients).reshape(size, n_patients)
        yield counts[:, codes].astype(np.float64)


def bootstrap(statistic: Statistic, patient_ids: np.ndarray, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Evaluate ``statistic`` on ``n_boot`` patient resamples; returns arrays ``(n_boot, ...)`` per name."""
    parts: dict[str, list[np.ndarray]] = {}
    for weights in resample_weights(patient_ids, n_boot, seed):
        for name, values in statistic(weights).items():
            parts.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    return {name: np.concatenate(chunks, axis=0) for name, chunks in parts.items()}


def estimate(
    value: float | None, samples: np.ndarray | None, ci: float, reason: str | None = None
) -> Estimate:
    """Build an :class:`Estimate` from a point value and the metric's bootstrap samples ``(B,)``.

    A NaN or ``None`` value means undefined on the data (``reason`` should say why); NaN samples are the
    degenerate resamples, skipped and counted.
    """
    if value is None or not np.isfinite(value):
        return Estimate(value=None, reason=reason or "undefined on these data")
    if samples is None or samples.size == 0:
        return Estimate(value=float(value))
    valid = samples[np.isfinite(samples)]
    skipped = int(samples.size - valid.size)
    if valid.size < 2:
        return Estimate(value=float(value), n_valid=int(valid.size), n_skipped=skipped)
    low, high = np.quantile(valid, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    return Estimate(
        value=float(value), low=float(low), high=float(high), n_valid=int(valid.size), n_skipped=skipped
    )


#: What :func:`estimate_text` formats: an :class:`Estimate`, its JSON dump, a bundle's ``[value, low, high]``
#: triple (:func:`chestlens.evaluate.bundle_eval.triple`), or ``None`` for a metric that was not measured.
EstimateLike = Estimate | Mapping[str, Any] | Sequence[float | None] | None


def estimate_text(e: EstimateLike, *, reason: bool = False) -> str:
    """The one text of an estimate in every output (HTML reports, model cards, terminal, figure legends).

    ``"0.912 [0.870, 0.950]"`` (value and interval, 3 decimals), ``"0.912"`` without an interval, and
    ``"n/a"`` when undefined or not measured (``"n/a (why)"`` with ``reason`` and a reason recorded).
    """
    if e is None:
        return "n/a"
    if isinstance(e, Mapping):
        e = Estimate.model_validate(e)
    elif not isinstance(e, Estimate):
        value, low, high = e
        e = Estimate(value=value, low=low, high=high)
    if e.value is None:
        return f"n/a ({e.reason})" if reason and e.reason else "n/a"
    if e.low is None or e.high is None:
        return f"{e.value:.3f}"
    return f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"
