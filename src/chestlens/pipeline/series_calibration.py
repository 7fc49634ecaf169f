"""The series threshold of a CT lesion segmenter: chosen on labelled series, stored in its bundle.

A CT series is "lesions found" when its lesions cover at least the lesion bundle's ``series_threshold``
of its lungs (:func:`chestlens.pipeline.measure.series_verdict`). The share depends on the weights (how
much faint ground glass a model paints on a clean lung), so it belongs to the bundle, not to the
pipeline: :func:`calibrate_series` screens labelled CT series with the bundle (Hounsfield-unit lungs, no
classifier), pools every slice's share of its lungs covered by lesions with the slice labels and keeps
the cut with the largest Youden's J (:func:`chestlens.evaluate.ct_series.involvement_threshold`);
:func:`store_series_threshold` writes it, with what it was chosen on, into ``bundle.json``.

Slice labels are read where chestlens has a reader for them: COVID-CT-MD series
(:func:`chestlens.data.sources.covid_ct_md.slice_labels`). The stored record counts series and slices;
it names none (folder names may be patient names).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from chestlens.data.sources.covid_ct_md import slice_labels
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.ct_series import involvement_threshold
from chestlens.models.catalog import resolve_bundle
from chestlens.models.spec import read_spec, write_spec
from chestlens.pipeline.measure import series_verdict
from chestlens.pipeline.schema import SeriesVerdict
from chestlens.pipeline.screener import Screener
from chestlens.strict import StrictModel


class CalibrationSeries(StrictModel):
    """One labelled series as the calibrated threshold judges it."""

    n_slices: int
    n_infected: int  # slices labelled infected
    lung_fraction_total: float  # share of the lungs covered by lesions, 0-1
    verdict: SeriesVerdict  # at the chosen threshold


class SeriesCalibration(StrictModel):
    """A lesion bundle's series threshold and the labelled slices it was chosen on."""

    bundle: str  # name and version
    weights_sha256: str
    threshold: float  # share of the lungs, 0-1
    rule: str
    n_series: int
    n_slices: int
    n_infected: int
    slice_sensitivity: float  # infected slices whose own lung involvement reaches the threshold
    slice_specificity: float  # clean slices under it
    series: list[CalibrationSeries]


RULE = (
    "the share of a slice's lungs covered by lesions, cut at the value with the largest Youden's J over "
    "the pooled labelled slices, rounded to two significant digits"
)


def series_calibration(
    bundle: str,
    weights_sha256: str,
    fractions: Sequence[Sequence[float]],
    labels: Sequence[Sequence[bool]],
    totals: Sequence[float],
) -> SeriesCalibration:
    """The threshold chosen on labelled slices and how it judges them.

    Args:
        bundle: the lesion bundle's name and version, for the record.
        weights_sha256: its weights' digest (a stored threshold is refused by other weights).
        fractions: per series, ``(slices,)`` each slice's share of its lungs covered by lesions.
        labels: per series, ``(slices,)`` True where the slice is labelled infected, same order.
        totals: per series, the share of its whole lungs covered by lesions.

    Raises:
        ChestlensInputError: a series' labels and slices differ in number, or the pooled slices lack
            infected or clean ones, or no slice has lesions.
    """
    for k, (shares, truth) in enumerate(zip(fractions, labels, strict=True), start=1):
        if len(shares) != len(truth):
            raise ChestlensInputError(None, f"series {k}: {len(shares)} slices but {len(truth)} slice labels")
    shares = np.concatenate([np.asarray(f, np.float64) for f in fractions])
    truth = np.concatenate([np.asarray(t, bool) for t in labels])
    threshold = involvement_threshold(shares, truth)
    decided = shares >= threshold
    return SeriesCalibration(
        bundle=bundle,
        weights_sha256=weights_sha256,
        threshold=threshold,
        rule=RULE,
        n_series=len(totals),
        n_slices=int(truth.size),
        n_infected=int(truth.sum()),
        slice_sensitivity=float(decided[truth].mean()),
        slice_specificity=float((~decided[~truth]).mean()),
        series=[
            CalibrationSeries(
                n_slices=len(t),
                n_infected=int(np.sum(t)),
                lung_fraction_total=float(total),
                verdict=series_verdict(float(total), threshold),
            )
            for t, total in zip(labels, totals, strict=True)
        ],
    )


def calibrate_series(
    bundle: str | Path,
    folders: Sequence[Path],
    *,
    runtime: Literal["onnx", "torch"] = "onnx",
    device: str = "auto",
) -> SeriesCalibration:
    """Screen each labelled CT series folder with the lesion ``bundle`` and choose its series threshold.

    Raises:
        ChestlensInputError: a folder has no slice labels or is not screened as a CT series with lesions,
            or the labelled slices cannot choose a threshold (:func:`series_calibration`).
    """
    screener = Screener(
        classifier=None, lungs=None, lesions=[str(bundle)], runtime=runtime, device=device, cam=None
    )
    spec = read_spec(bundle)
    fractions, labels, totals = [], [], []
    for folder in folders:
        truth = [label.infected for label in slice_labels(folder)]
        lesions = screener.screen(folder).result.lesions
        if lesions is None or lesions.slice_lung_fractions is None or lesions.lung_fraction_total is None:
            raise ChestlensInputError(folder, "not screened as a CT series with lungs and lesions")
        fractions.append(lesions.slice_lung_fractions)
        labels.append(truth)
        totals.append(lesions.lung_fraction_total)
    return series_calibration(f"{spec.name} {spec.version}", spec.weights_sha256, fractions, labels, totals)


def store_series_threshold(bundle: str | Path, calibration: SeriesCalibration) -> Path:
    """Write ``calibration.threshold`` as the ``series_threshold`` of the bundle folder ``bundle``, and the
    calibration as ``metrics.series_calibration`` (``bundle.json`` only, atomically); returns the file.

    Raises:
        ChestlensInputError: the bundle is not a segmenter, or its weights are not those calibrated.
    """
    folder = resolve_bundle(bundle)
    spec = read_spec(folder)
    if spec.kind != "segmenter":
        raise ChestlensInputError(
            folder, f"a {spec.kind} bundle has no series threshold (a lesion segmenter has)"
        )
    if spec.weights_sha256 != calibration.weights_sha256:
        raise ChestlensInputError(folder, "its weights are not those the threshold was chosen for")
    spec.series_threshold = calibration.threshold
    spec.metrics["series_calibration"] = calibration.model_dump(mode="json")
    return write_spec(folder, spec)
