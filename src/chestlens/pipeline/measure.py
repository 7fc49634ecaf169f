"""Physical measurements of masks predicted on the network grid.

Masks come at the segmenter's input size ``(S, S)``, a stretched copy of the whole image, so one mask
pixel covers ``(rows / S) x (cols / S)`` image pixels. Areas are in mm² when the image has a pixel
spacing, volumes in mL (1 mL = 1000 mm³) for CT series.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from chestlens.io.image import ImageMeta
from chestlens.io.series import MISSING_SLICES
from chestlens.pipeline.schema import Lesion, SeriesVerdict

#: Connected regions smaller than this many mask pixels (at the network grid) are not reported.
MIN_LESION_PIXELS = 16

#: The smallest CT series lesion reported (mL): a sphere of about 4.6 mm, the size below which chest CT
#: reporting leaves nodules out; chosen a priori, not tuned on the shared patients.
MIN_LESION_ML = 0.05

#: How far (mm) outside the lung mask a lesion region may start and still count as a lung lesion: the
#: Hounsfield-unit lung rule leaves out dense consolidation and the pleura at the lung border.
LUNG_MARGIN_MM = 5.0

#: A lesion region is a lung lesion when at least this share of its outline (its in-plane border pixels)
#: lies within :data:`LUNG_MARGIN_MM` of the lungs: a lung lesion is bordered by lung or pleura over much
#: of its outline, an organ that merely abuts the lungs is not. Set after a 512 px fit called the food-
#: and gas-filled stomach of COVID-CT-MD normal002 consolidation (67 mL, one voxel within reach of the
#: lungs, outline share 0.000); on the three shared patients the lesion regions of P001 and cap002 have
#: outline shares of 0.40 and above (0.82 and above from 0.5 mL), so any value from 0.01 to 0.40 gives
#: the same result there, and a quarter sits inside that range.
MIN_LUNG_OUTLINE_SHARE = 0.25

#: CT lesion voxels must be denser than well-aerated lung, which reads -950 to -700 HU; ground glass is
#: -700 to -300 HU and consolidation above (the density bands of quantitative chest CT, e.g. Colombi et
#: al., Radiology 2020). Taken from that definition, not tuned on the shared patients.
AERATED_LUNG_MAX_HU = -700.0


def pixel_area_mm2(meta: ImageMeta, grid: tuple[int, int]) -> float | None:
    """Area in mm² of one pixel of a ``grid`` = ``(height, width)`` mask stretched over the image."""
    if meta.pixel_spacing_mm is None:
        return None
    row_mm, col_mm = meta.pixel_spacing_mm
    return (meta.rows / grid[0]) * row_mm * (meta.cols / grid[1]) * col_mm


def area_mm2(mask: np.ndarray, meta: ImageMeta) -> float | None:
    """Area of a boolean mask ``(H, W)`` in mm², or None without pixel spacing."""
    unit = pixel_area_mm2(meta, mask.shape[-2:])
    return None if unit is None else float(mask.sum()) * unit


def slice_gap(meta: ImageMeta) -> str | None:
    """The reader's missing-slice warning of a series (:mod:`chestlens.io.series`), or None."""
    return next((w for w in meta.warnings if w.startswith(MISSING_SLICES)), None)


def voxel_ml(meta: ImageMeta, grid: tuple[int, int]) -> float | None:
    """Volume (mL) of one voxel of a ``grid`` mask stack over the series; None without pixel and slice
    spacing, and None for a series with missing slices (:func:`slice_gap`: a volume across the gap would
    be wrong)."""
    unit = pixel_area_mm2(meta, grid)
    if unit is None or meta.slice_spacing_mm is None or slice_gap(meta) is not None:
        return None
    return unit * meta.slice_spacing_mm / 1000.0


def volume_ml(mask: np.ndarray, meta: ImageMeta) -> float | None:
    """Volume of a boolean mask ``(slices, H, W)`` in mL, or None (see :func:`voxel_ml`)."""
    voxel = voxel_ml(meta, mask.shape[-2:])
    return None if voxel is None else float(mask.sum()) * voxel


def lesion_instances(
    label_map: np.ndarray,
    probabilities: np.ndarray,
    labels: list[str],
    meta: ImageMeta,
) -> list[Lesion]:
    """Connected regions of each lesion class of one image, largest first within a class (a CT series:
    :func:`lesion_instances_3d`).

    Args:
        label_map: ``(S, S)`` uint8, 0 = background, ``k`` = ``labels[k - 1]``.
        probabilities: ``(C, S, S)`` per-class probabilities on the same grid (channel 0 background).
        labels: the lesion class names (without background).
        meta: the image, for mm² and for boxes in image pixels.
    """
    scale_y, scale_x = meta.rows / label_map.shape[0], meta.cols / label_map.shape[1]
    unit = pixel_area_mm2(meta, label_map.shape)
    lesions = []
    for label, k, (y, x), region in _class_regions(label_map, labels):
        pixels = int(region.sum())
        if pixels < MIN_LESION_PIXELS:
            continue
        lesions.append(
            Lesion(
                label=label,
                area_pixels=round(pixels * scale_y * scale_x),
                area_mm2=None if unit is None else pixels * unit,
                box=_box_in_image(y, x, scale_y, scale_x),
                score=float(probabilities[k][y, x][region].mean()),
            )
        )
    return sorted(lesions, key=lambda lesion: (labels.index(lesion.label), -lesion.area_pixels))


def _class_regions(label_map: np.ndarray, labels: list[str]) -> Iterator[tuple[str, int, tuple, np.ndarray]]:
    """``(label, k, box, region)`` for every connected region of every class of ``label_map`` (2-D or
    3-D): ``box`` is the region's tuple of slices, ``region`` its bool mask inside the box."""
    for k, label in enumerate(labels, start=1):
        regions, _ = ndimage.label(label_map == k)
        for index, box in enumerate(ndimage.find_objects(regions), start=1):
            yield label, k, box, regions[box] == index


def _box_in_image(y: slice, x: slice, scale_y: float, scale_x: float) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` in image pixels (exclusive end) of a box on the network grid."""
    return (
        int(x.start * scale_x),
        int(y.start * scale_y),
        int(np.ceil(x.stop * scale_x)),
        int(np.ceil(y.stop * scale_y)),
    )


def lesions_in_lungs(
    label_map: np.ndarray,
    lungs: np.ndarray,
    meta: ImageMeta,
    margin_mm: float = LUNG_MARGIN_MM,
    min_outline_share: float = MIN_LUNG_OUTLINE_SHARE,
) -> tuple[np.ndarray, int]:
    """Keep only the lesion regions that belong to the lungs; a lung lesion outside them is not one.

    A region is a connected component of ``label_map > 0`` (in 3-D for a series). It is kept when at least
    ``min_outline_share`` of its outline (the region's pixels with a neighbour outside it in their slice)
    lies in the lung mask grown by ``margin_mm`` within each slice (by 1 grid pixel at least; by 1% of the
    grid without a pixel spacing). Consolidation at the lung border stays (the lung rule leaves it out, but
    lung borders it); "lesions" in the chest wall, the paraspinal muscle, the neck, outside the body, or in
    an organ that only abuts the lungs (the stomach under the diaphragm, the heart) go. Every region kept
    thus counts as lung for the involvement shares (:func:`lungs_with_lesions`).

    Args:
        label_map: ``(S, S)`` or ``(slices, S, S)`` uint8, 0 = background.
        lungs: bool lung mask on the same grid.
        meta: the image, for the pixel spacing (mm) of the grid.
        margin_mm: how far the lungs are grown, in mm.
        min_outline_share: the share of a region's outline that must lie in the grown lungs, in [0, 1].

    Returns:
        The label map with the other regions set to 0, and how many regions were removed.
    """
    volume = label_map.ndim == 3
    maps, lung_grid = (label_map, lungs) if volume else (label_map[None], lungs[None])
    grid = maps.shape[-2:]
    if meta.pixel_spacing_mm is None:
        radius = max(1, round(0.01 * max(grid)))
    else:
        row_mm, col_mm = meta.pixel_spacing_mm
        grid_mm = min(meta.rows / grid[0] * row_mm, meta.cols / grid[1] * col_mm)  # one grid pixel
        radius = max(1, round(margin_mm / grid_mm))
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    disk = (yy**2 + xx**2 <= radius**2)[None]  # grows within each slice only
    reach = ndimage.binary_dilation(lung_grid, structure=disk)
    lesion = maps > 0
    regions, count = ndimage.label(lesion)
    if not count:
        return label_map, 0
    outline = lesion & ~ndimage.binary_erosion(lesion, structure=np.ones((1, 3, 3), bool))
    index = np.arange(1, count + 1)
    border = ndimage.sum_labels(outline, regions, index)
    near = ndimage.sum_labels(outline & reach, regions, index)
    keep = near >= min_outline_share * border
    keep &= near > 0  # at least one outline pixel in reach, whatever the share asked
    filtered = np.where(np.concatenate([[False], keep])[regions], maps, 0).astype(maps.dtype)
    return (filtered if volume else filtered[0]), int(count - keep.sum())


def hu_on_grid(hu: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """CT slices ``(slices, rows, cols)`` in HU, area-averaged (antialiased) onto the network grid
    ``(slices, S, S)`` as float32: each grid pixel reads the mean HU of the image pixels under it."""
    import cv2

    size = (int(grid[1]), int(grid[0]))  # OpenCV takes (width, height)
    return np.stack([cv2.resize(np.asarray(s, np.float32), size, interpolation=cv2.INTER_AREA) for s in hu])


def lesions_denser_than_lung(label_map: np.ndarray, hu_grid: np.ndarray) -> tuple[np.ndarray, float]:
    """CT: lesion labels only where the grid reads denser than well-aerated lung.

    The segmenter's outline of a lesion takes in aerated lung around and between opacities, and on a
    normal chest it calls aerated lung next to vessels, the heart and the dependent lung bases ground glass.
    A voxel at or below :data:`AERATED_LUNG_MAX_HU` is aerated lung by the density definition of ground
    glass, so its label is cleared.

    Args:
        label_map: ``(S, S)`` or ``(slices, S, S)`` uint8, 0 = background.
        hu_grid: HU on the same grid (:func:`hu_on_grid`).

    Returns:
        The label map without those voxels, and the share of the lesion voxels cleared (0 without any).
    """
    lesion = label_map > 0
    cleared = lesion & (hu_grid <= AERATED_LUNG_MAX_HU)
    share = float(cleared.sum() / lesion.sum()) if lesion.any() else 0.0
    return np.where(cleared, 0, label_map).astype(label_map.dtype), share


def drop_small_lesions(label_map: np.ndarray, meta: ImageMeta) -> tuple[np.ndarray, int]:
    """A series' label map ``(slices, S, S)`` without the 3-D lesion regions under :data:`MIN_LESION_ML`
    (under ``3 * MIN_LESION_PIXELS`` voxels without a usable voxel volume); returns it and how many went."""
    voxel = voxel_ml(meta, label_map.shape[-2:])
    regions, count = ndimage.label(label_map > 0)
    if not count:
        return label_map, 0
    sizes = np.bincount(regions.ravel())[1:]
    small = sizes * voxel < MIN_LESION_ML if voxel is not None else sizes < 3 * MIN_LESION_PIXELS
    drop = np.concatenate([[False], small])[regions]
    return np.where(drop, 0, label_map).astype(label_map.dtype), int(small.sum())


def lesion_instances_3d(
    label_map: np.ndarray, probabilities: np.ndarray, labels: list[str], meta: ImageMeta
) -> list[Lesion]:
    """The lesions of a CT series as 3-D connected regions of each class, largest first within a class.

    Args:
        label_map: ``(slices, S, S)`` uint8, 0 = background, ``k`` = ``labels[k - 1]``.
        probabilities: ``(slices, C, S, S)`` class probabilities on the same grid.
        labels: the lesion class names (without background).
        meta: the series, for volumes and for boxes in image pixels.
    """
    scale_y, scale_x = meta.rows / label_map.shape[1], meta.cols / label_map.shape[2]
    voxel = voxel_ml(meta, label_map.shape[-2:])
    unit = pixel_area_mm2(meta, label_map.shape[-2:])
    lesions = []
    for label, k, (z, y, x), region in _class_regions(label_map, labels):
        per_slice = region.sum(axis=(1, 2))
        largest = int(per_slice.max())
        lesions.append(
            Lesion(
                label=label,
                area_pixels=round(largest * scale_y * scale_x),
                area_mm2=None if unit is None else largest * unit,
                box=_box_in_image(y, x, scale_y, scale_x),
                score=float(probabilities[z, k][:, y, x][region].mean()),
                slice_index=z.start + int(per_slice.argmax()),
                slices=(z.start, z.stop - 1),
                volume_ml=None if voxel is None else int(region.sum()) * voxel,
            )
        )
    return sorted(lesions, key=lambda lesion: (labels.index(lesion.label), -(lesion.volume_ml or 0.0)))


def slice_lesion_scores(label_map: np.ndarray, probabilities: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """Per-slice lesion score of a CT series: the largest mean lesion probability ``1 - P(background)``
    over the slice's lesion regions inside the lungs, 0 for a slice without one.

    A region is a connected component (8-connectivity) of ``(label_map > 0) & lungs`` with at least
    :data:`MIN_LESION_PIXELS` pixels, so a slice scores above 0 exactly when the segmenter reports a
    lesion region in its lungs.

    Args:
        label_map: ``(slices, S, S)`` uint8, 0 = background.
        probabilities: ``(slices, C, S, S)`` class probabilities (channel 0 background).
        lungs: ``(slices, S, S)`` bool lung mask on the same grid.

    Returns:
        ``(slices,)`` float scores in ``[0, 1]``.
    """
    scores = np.zeros(len(label_map))
    for index, (slice_map, slice_probs, slice_lungs) in enumerate(
        zip(label_map, probabilities, lungs, strict=True)
    ):
        regions, count = ndimage.label((slice_map > 0) & slice_lungs, structure=np.ones((3, 3), bool))
        if not count:
            continue
        lesion_probability = 1.0 - slice_probs[0]
        sizes = ndimage.sum_labels(np.ones_like(regions), regions, index=np.arange(1, count + 1))
        means = ndimage.mean(lesion_probability, regions, index=np.arange(1, count + 1))
        kept = np.asarray(means)[np.asarray(sizes) >= MIN_LESION_PIXELS]
        scores[index] = float(kept.max()) if kept.size else 0.0
    return scores


def slice_lung_fractions(label_map: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """Per slice of a CT series, the share of its lungs covered by lesions: lesion voxels inside ``lungs``
    over ``lungs`` voxels, 0 on a slice without lungs.

    Args:
        label_map: ``(slices, S, S)`` uint8, 0 = background.
        lungs: ``(slices, S, S)`` bool, the lungs with their lesions (:func:`lungs_with_lesions`).

    Returns:
        ``(slices,)`` float shares in ``[0, 1]``.
    """
    lung = lungs.sum(axis=(1, 2))
    lesion = ((label_map > 0) & lungs).sum(axis=(1, 2))
    return np.divide(lesion, lung, out=np.zeros(len(lung)), where=lung > 0)


def series_verdict(lung_fraction: float, threshold: float) -> SeriesVerdict:
    """``lesions found`` when a series' lesions cover at least ``threshold`` of its lungs (``lung_fraction``,
    both shares in ``[0, 1]``; the threshold is the lesion bundle's ``series_threshold``), else ``no lesions
    found``."""
    return "lesions found" if lung_fraction >= threshold else "no lesions found"


def lungs_with_lesions(lungs: np.ndarray, label_map: np.ndarray) -> np.ndarray:
    """The lung region for involvement shares: ``lungs`` plus every lesion voxel of ``label_map``.

    A Hounsfield-unit lung rule keeps aerated lung only, so dense consolidation at the lung border falls
    outside it. ``label_map`` holds lung lesions only (:func:`lesions_in_lungs` removed the rest), so each
    of its voxels belongs to the lungs: a series' lesion volume is then its involvement share times the
    volume of this region, and the two measures cannot disagree.
    Shapes: ``(S, S)`` or ``(slices, S, S)``, bool lungs and uint8 label map on the same grid.
    """
    return lungs | (label_map > 0)
