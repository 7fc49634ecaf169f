"""Frontal or lateral, and a radiograph at all? The gate's view checks for inputs without DICOM tags.

Pictures (PNG, JPEG) carry no ViewPosition, and a lateral chest radiograph passes every lung-field
plausibility statistic (:mod:`chestlens.pipeline.gate`). This check scores the view from what the
screener already computed for the gate: the working image and the lung segmenter's probability map.

Features (:func:`view_features`, 154 values): the working image and the lung probability map on a coarse
6 x 6 grid (two lung fields side by side, or one overlapped field in front of the spine), the column and
row brightness profiles and their left-right asymmetry, the left half's share of the lung map, the
aspect ratio, and edge-orientation histograms in 2 x 2 cells. A logistic regression on them
(:class:`ViewModel`, ``view_model.json`` next to this module, plain numbers: no pickle) gives
P(lateral); above the stored threshold the check fails with the reason "lateral view".

The model, its threshold and its cross-validated figures come from ``bench/view_check.py`` (frontal and
lateral films of the shared data, patient-grouped folds repeated with 5 seeds; the threshold is the
highest out-of-fold score of any frontal film in any repeat, so that no frontal film is rejected out of
fold).

A second model on the same features (``ct_picture_model.json``, ``bench/view_check.py --target
ct_picture``) gives P(picture of an axial CT slice): a CT slice exported as PNG or JPEG has no Hounsfield
units, so it reaches the radiograph path, and its two dark lung fields in a bright body can pass every
lung-field statistic (5 of the 83 Inf-Net pictures did with ``lungs-segmenter`` 0.1.0, 23 with 0.2.0).
It is trained on every radiograph of known view (label 0) against the Inf-Net pictures and every
COVID-CT-MD slice rendered as an 8-bit picture in the lung and in the mediastinal window (label 1), with
the same grouped folds and threshold rule (no radiograph rejected out of fold): 99.4% of the CT pictures
were rejected out of fold on average (Inf-Net 83 of 83, COVID-CT-MD 886 of 892), out-of-fold AUC 0.99999.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from chestlens.pipeline.schema import GateCheck

#: The stored models (written by ``bench/view_check.py``): P(lateral), and P(picture of a CT slice).
VIEW_MODEL = Path(__file__).with_name("view_model.json")
CT_PICTURE_MODEL = Path(__file__).with_name("ct_picture_model.json")
#: Side (pixels) of the thumbnails the features are taken from.
THUMBNAIL = 64
#: Side of the coarse image and lung-map grids, and length of each profile.
FEATURE_GRID = 6
PROFILE = 16
#: Edge-orientation histograms: the thumbnail split into GRADIENT_CELLS x GRADIENT_CELLS cells, each a
#: histogram of GRADIENT_BINS orientations (0-180 degrees) weighted by gradient magnitude.
GRADIENT_CELLS = 2
GRADIENT_BINS = 8
#: Length of the feature vector.
N_FEATURES = 2 * FEATURE_GRID**2 + 3 * PROFILE + 2 + GRADIENT_CELLS**2 * GRADIENT_BINS


def _standardised(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-6)


def edge_orientations(thumbnail: np.ndarray) -> np.ndarray:
    """Per cell, the share of gradient magnitude in each orientation bin (``GRADIENT_CELLS**2 *
    GRADIENT_BINS`` values): a lateral film's spine, sternum and diaphragm run at other angles than a
    frontal film's ribs and mediastinum."""
    import cv2

    gx = cv2.Sobel(thumbnail, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(thumbnail, cv2.CV_32F, 0, 1)
    magnitude = np.hypot(gx, gy)
    orientation = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((orientation / np.pi * GRADIENT_BINS).astype(int), GRADIENT_BINS - 1)
    side = thumbnail.shape[0] // GRADIENT_CELLS
    histograms = []
    for row in range(GRADIENT_CELLS):
        for col in range(GRADIENT_CELLS):
            cell = (slice(row * side, (row + 1) * side), slice(col * side, (col + 1) * side))
            counts = np.bincount(bins[cell].ravel(), weights=magnitude[cell].ravel(), minlength=GRADIENT_BINS)
            histograms.append(counts / (counts.sum() + 1e-6))
    return np.concatenate(histograms)


def view_features(work: np.ndarray, lung_probability: np.ndarray) -> np.ndarray:
    """The view features of one radiograph.

    Args:
        work: the working image ``(H, W)``, float32 in ``[0, 1]`` (the screener's ``prepare`` stage).
        lung_probability: the lung segmenter's ``(S, S)`` probabilities for that image.

    Returns:
        ``(N_FEATURES,)`` float64: the image on a ``FEATURE_GRID`` grid (standardised), the lung map on
        that grid, the column and row brightness profiles and the left-right asymmetry of the column
        profile (``PROFILE`` values each, standardised), the left half's share of the lung map,
        log(H / W), and the edge-orientation histograms (:func:`edge_orientations`). Every shrink is by
        area averaging, from ``THUMBNAIL``-pixel thumbnails.
    """
    import cv2

    def shrink(array: np.ndarray, width: int, height: int, mode: int = cv2.INTER_AREA) -> np.ndarray:
        return cv2.resize(np.asarray(array, np.float32), (width, height), interpolation=mode)

    image = shrink(work, THUMBNAIL, THUMBNAIL)
    lungs = shrink(lung_probability, THUMBNAIL, THUMBNAIL)
    columns, rows = _standardised(image.mean(0)), _standardised(image.mean(1))
    asymmetry = np.abs(columns - columns[::-1])
    profiles = [shrink(p[None], PROFILE, 1, cv2.INTER_LINEAR).ravel() for p in (columns, rows, asymmetry)]
    per_column = lungs.sum(0)
    left_share = per_column[: THUMBNAIL // 2].sum() / (per_column.sum() + 1e-6)
    parts = [
        _standardised(shrink(image, FEATURE_GRID, FEATURE_GRID).astype(np.float64)).ravel(),
        shrink(lungs, FEATURE_GRID, FEATURE_GRID).ravel(),
        *profiles,
        [left_share, np.log(work.shape[0] / work.shape[1])],
        edge_orientations(image),
    ]
    return np.concatenate([np.asarray(part, np.float64).ravel() for part in parts])


@dataclass(frozen=True)
class ViewModel:
    """A standardised logistic regression: P(lateral) = sigmoid(w . (x - mean) / scale + b)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    description: str

    def probability(self, features: np.ndarray) -> float:
        z = float(((features - self.mean) / self.scale) @ self.weights + self.bias)
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))

    @classmethod
    def read(cls, path: Path = VIEW_MODEL) -> ViewModel:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            mean=np.asarray(data["mean"], np.float64),
            scale=np.asarray(data["scale"], np.float64),
            weights=np.asarray(data["weights"], np.float64),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            description=str(data["description"]),
        )


@cache
def view_model() -> ViewModel:
    """The shipped lateral model, read once."""
    return ViewModel.read()


@cache
def ct_picture_model() -> ViewModel:
    """The shipped CT-picture model, read once."""
    return ViewModel.read(CT_PICTURE_MODEL)


def check_view(
    work: np.ndarray,
    lung_probability: np.ndarray,
    model: ViewModel | None = None,
    features: np.ndarray | None = None,
) -> GateCheck:
    """``view`` check: fails for a lateral radiograph (P(lateral) above the model's threshold).
    ``features``: :func:`view_features` of the inputs when already computed."""
    model = model or view_model()
    p = model.probability(view_features(work, lung_probability) if features is None else features)
    if p > model.threshold:
        threshold = model.threshold
        detail = f"lateral view (P(lateral) {p:.3f} > {threshold:.3f}); only frontal views are screened"
        return GateCheck(name="view", passed=False, detail=detail)
    return GateCheck(name="view", passed=True, detail=f"frontal view (P(lateral) {p:.3f})")


def check_ct_picture(
    work: np.ndarray,
    lung_probability: np.ndarray,
    model: ViewModel | None = None,
    features: np.ndarray | None = None,
) -> GateCheck:
    """``ct_picture`` check: fails for a picture of an axial CT slice (a PNG or JPEG export: no Hounsfield
    units), whose two dark lung fields in a bright body can pass the lung-field statistics. P(CT picture)
    from the same features as :func:`check_view` (``ct_picture_model.json``, ``bench/view_check.py
    --target ct_picture``)."""
    model = model or ct_picture_model()
    p = model.probability(view_features(work, lung_probability) if features is None else features)
    if p > model.threshold:
        detail = (
            f"a picture of an axial CT slice (P {p:.3f} > {model.threshold:.3f}), not a radiograph: "
            "screen the CT series as DICOM"
        )
        return GateCheck(name="ct_picture", passed=False, detail=detail)
    return GateCheck(name="ct_picture", passed=True, detail=f"not a CT slice picture (P {p:.3f})")


def view_checks(work: np.ndarray, lung_probability: np.ndarray) -> list[GateCheck]:
    """The ``view`` and ``ct_picture`` checks of one radiograph or picture, from one feature vector."""
    features = view_features(work, lung_probability)
    return [
        check_view(work, lung_probability, features=features),
        check_ct_picture(work, lung_probability, features=features),
    ]
