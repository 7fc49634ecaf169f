"""Series lesion features: how much of the lungs a CT series' lesions take and where they lie.

One function, :func:`series_lesion_features`, reads what the lesion stage already has for a series (the
HU volume, the lung mask and the lesion label map, all on the segmenter grid, and the grid's voxel size)
and returns a :class:`~chestlens.pipeline.schema.LesionFeatures`. The study classifier
(:mod:`chestlens.models.study`) reads them; the screening result carries them as ``lesions.features``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from chestlens.io.image import ImageMeta
from chestlens.models.study import STUDY_FEATURES
from chestlens.pipeline.measure import MIN_LESION_ML, lungs_with_lesions, pixel_area_mm2, slice_gap
from chestlens.pipeline.schema import LesionFeatures

__all__ = ["STUDY_FEATURES", "feature_vector", "grid_spacing_mm", "series_lesion_features"]

#: Lesion class names read as ground-glass opacity.
GGO_LABELS = ("ggo", "ground_glass_opacity", "ground-glass opacity", "ground_glass")
#: Body voxels for the midline: denser than this (HU), i.e. soft tissue and bone, not air or lung.
BODY_MIN_HU = -500.0
#: Peripheral: the outer third of each lung's in-plane depth.
PERIPHERAL_DEPTH = 1.0 / 3.0


def grid_spacing_mm(meta: ImageMeta, grid: tuple[int, int]) -> tuple[float, float, float] | None:
    """``(slice, row, column)`` size in mm of one voxel of a ``grid`` mask stack over a series; None
    without pixel or slice spacing, or with missing slices (as
    :func:`chestlens.pipeline.measure.voxel_ml`)."""
    if pixel_area_mm2(meta, grid) is None or meta.slice_spacing_mm is None or slice_gap(meta) is not None:
        return None
    row_mm, col_mm = meta.pixel_spacing_mm  # type: ignore[misc]
    return float(meta.slice_spacing_mm), meta.rows / grid[0] * row_mm, meta.cols / grid[1] * col_mm


def body_midline(hu: np.ndarray) -> float:
    """The column of the body's midline: the mean column of the voxels denser than :data:`BODY_MIN_HU`
    in the largest connected body region (the table and arms' separate parts are left out); the grid
    centre when there is no body."""
    body = hu > BODY_MIN_HU
    regions, count = ndimage.label(body)
    if not count:
        return (hu.shape[-1] - 1) / 2.0
    largest = 1 + int(np.argmax(np.bincount(regions.ravel())[1:]))
    return float(np.nonzero(regions == largest)[-1].mean())


def _peripheral(side: np.ndarray, row_mm: float, col_mm: float) -> np.ndarray:
    """Per slice, the voxels of one lung whose in-plane distance to the lung's boundary is at most
    :data:`PERIPHERAL_DEPTH` of the deepest voxel of that lung on that slice."""
    out = np.zeros_like(side)
    for k in np.flatnonzero(side.any(axis=(1, 2))):
        depth = ndimage.distance_transform_edt(side[k], sampling=(row_mm, col_mm))
        out[k] = side[k] & (depth <= PERIPHERAL_DEPTH * depth.max())
    return out


def series_lesion_features(
    hu: np.ndarray,
    lungs: np.ndarray,
    label_map: np.ndarray,
    spacing_mm: tuple[float, float, float],
    labels: Sequence[str],
) -> LesionFeatures:
    """Lesion burden and distribution of one CT series.

    Args:
        hu: ``(slices, S, S)`` Hounsfield units on the segmenter grid
            (:func:`~chestlens.pipeline.measure.hu_on_grid`).
        lungs: ``(slices, S, S)`` bool lung mask on the same grid (the HU rule); the lesion voxels are
            added (:func:`~chestlens.pipeline.measure.lungs_with_lesions`), so consolidation the HU rule
            leaves out counts as lung.
        label_map: ``(slices, S, S)`` uint8 lesion labels after the lesion stage's clean-up, 0 background,
            ``k`` = ``labels[k - 1]``; slices in volume order (ascending patient z, inferior first).
        spacing_mm: ``(slice, row, column)`` size of one grid voxel in mm (:func:`grid_spacing_mm`).
        labels: the lesion class names; a name in :data:`GGO_LABELS` is ground glass.

    Returns:
        Every feature is computed over the lesion voxels inside the lungs (``lesion``):

        - ``lung_volume_ml``, ``lesion_volume_ml``: volumes in mL (1 mL = 1000 mm³).
        - ``burden_pct``: ``lesion`` volume over lung volume, in % (0-100).
        - ``ggo_share``: ground-glass share of the ``lesion`` volume (1 - ``ggo_share`` is the other
          classes, i.e. consolidation), in [0, 1].
        - ``peripheral_share``: share of the ``lesion`` volume in the outer third of its lung: on each
          axial slice, each lung's voxels whose in-plane Euclidean distance (mm) to that lung's boundary
          (costal and mediastinal pleura alike) is at most a third of the largest such distance in that
          lung on that slice. In [0, 1].
        - ``bilateral``: each lung holds at least :data:`~chestlens.pipeline.measure.MIN_LESION_ML` of
          ``lesion``. The lungs are split at the body midline (:func:`body_midline`), a column of the grid.
        - ``smaller_side_share``: the less involved side's share of the ``lesion`` volume, in [0, 0.5]
          (0: one lung only; 0.5: even).
        - ``lower_zone_share``: share of the ``lesion`` volume in the lower (inferior) half of the lungs'
          z-extent (first to last slice with lung; a middle slice of an odd count counts half), in [0, 1].
        - ``midline_column``: the split column, for the record.

        The shares are 0 when the series has no lesion voxel in the lungs.
    """
    slice_mm, row_mm, col_mm = spacing_mm
    voxel_ml = slice_mm * row_mm * col_mm / 1000.0
    lung = lungs_with_lesions(lungs, label_map)
    lesion = label_map > 0  # inside ``lung`` by construction
    lesion_voxels = int(lesion.sum())
    lung_ml, lesion_ml = float(lung.sum()) * voxel_ml, lesion_voxels * voxel_ml

    def share(part: np.ndarray) -> float:
        return float((part & lesion).sum() / lesion_voxels) if lesion_voxels else 0.0

    ggo = np.isin(label_map, [k for k, name in enumerate(labels, start=1) if name.lower() in GGO_LABELS])
    midline = body_midline(hu)
    columns = np.arange(label_map.shape[-1])
    image_left = np.broadcast_to(columns < midline, label_map.shape)
    sides = [lung & image_left, lung & ~image_left]
    side_ml = [float((lesion & side).sum()) * voxel_ml for side in sides]
    peripheral = _peripheral(sides[0], row_mm, col_mm) | _peripheral(sides[1], row_mm, col_mm)
    with_lung = np.flatnonzero(lung.any(axis=(1, 2)))
    lower = np.zeros(len(label_map))
    if with_lung.size:
        first, count = with_lung[0], with_lung[-1] - with_lung[0] + 1
        lower = np.clip(first + count / 2.0 - np.arange(len(label_map)), 0.0, 1.0)
    per_slice = lesion.sum(axis=(1, 2))
    return LesionFeatures(
        lung_volume_ml=lung_ml,
        lesion_volume_ml=lesion_ml,
        burden_pct=100.0 * lesion_ml / lung_ml if lung_ml else 0.0,
        ggo_share=share(ggo),
        peripheral_share=share(peripheral),
        bilateral=min(side_ml) >= MIN_LESION_ML,
        smaller_side_share=min(side_ml) / lesion_ml if lesion_ml else 0.0,
        lower_zone_share=float((per_slice * lower).sum() / lesion_voxels) if lesion_voxels else 0.0,
        midline_column=midline,
    )


def feature_vector(features: LesionFeatures | Mapping[str, float], names: Sequence[str]) -> np.ndarray:
    """``features`` (a series' lesion features, or a mapping of feature names, e.g. those plus the regional
    classifier's) as float64 in the order of ``names`` (booleans as 0/1); an unknown name raises KeyError
    (a study bundle names its features in its spec)."""
    values = features.model_dump() if isinstance(features, LesionFeatures) else features
    return np.asarray([float(values[name]) for name in names], dtype=np.float64)
