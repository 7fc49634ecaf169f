"""Lung-field preprocessing of radiographs: crop to the lungs, mask what lies outside, equalise contrast.

A classifier trained on whole radiographs can separate hospitals by their borders, text markers,
collimation and processing instead of the lungs (DeGrave et al., Nat Mach Intell 2021). The steps
here, recorded in a bundle's :class:`~chestlens.preprocess.spec.PreprocessSpec`, take that away:

1. ``lung_roi="crop"`` or ``"mask"``: crop the image to the bounding box of the lung fields found by the
   lung segmenter, widened by ``lung_margin`` (a fraction of the box's height and width on each side);
2. resize to the network input size (antialiased bilinear, inside the model graph);
3. ``equalise="clahe"``: contrast-limited adaptive histogram equalisation (OpenCV) of the cropped
   image on the input grid, 8 x 8 tiles, clip limit :data:`CLAHE_CLIP`: it removes most of a source's
   global contrast and brightness processing;
4. ``lung_roi="mask"``: every pixel outside the lung fields, dilated by :data:`MASK_DILATION` of the
   side, is set to :data:`MASK_FILL`, so nothing outside the lungs can be read.

This module holds the geometry, with numpy only. Training (:mod:`chestlens.data.lung_roi`),
evaluation, the model graphs and the screening pipeline all use it with the lung mask that the lung
segmenter bundle gives on its own grid, so the same pixels reach the network everywhere. When the
lungs are not found (empty mask) the whole image is
kept, and the mask step is skipped.
"""

from __future__ import annotations

import numpy as np

from chestlens.preprocess.resize import resize_nearest
from chestlens.preprocess.spec import PreprocessSpec

#: A part of the image as fractions of its height and width: ``(top, bottom, left, right)``.
Box = tuple[float, float, float, float]
#: CLAHE clip limit (OpenCV's units: multiples of the mean bin height) and tile grid.
CLAHE_CLIP = 2.0
CLAHE_TILES = (8, 8)
#: The lung mask is dilated by this fraction of the input side before masking.
MASK_DILATION = 0.03
#: Grey value in ``[0, 1]`` given to pixels outside the dilated lung fields.
MASK_FILL = 0.0


def needs_lungs(spec: PreprocessSpec) -> bool:
    """True when the preprocessing needs a lung mask (crop or mask)."""
    return spec.lung_roi != "none"


def lung_box(mask: np.ndarray, margin: float) -> Box | None:
    """Bounding box of a bool mask ``(h, w)`` as fractions ``(top, bottom, left, right)`` in ``[0, 1]``,
    widened by ``margin`` of its height/width on each side and clipped to the image; None if empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    top, bottom = rows[0] / h, (rows[-1] + 1) / h
    left, right = cols[0] / w, (cols[-1] + 1) / w
    dy, dx = margin * (bottom - top), margin * (right - left)
    return max(0.0, top - dy), min(1.0, bottom + dy), max(0.0, left - dx), min(1.0, right + dx)


def _pixel_span(start: float, stop: float, size: int) -> slice:
    first = min(size - 1, int(np.floor(start * size)))
    return slice(first, max(first + 1, int(np.ceil(stop * size))))


def crop_fraction(array: np.ndarray, box: Box) -> np.ndarray:
    """The part of ``(..., H, W)`` inside a fractional ``(top, bottom, left, right)`` box."""
    h, w = array.shape[-2:]
    return array[..., _pixel_span(box[0], box[1], h), _pixel_span(box[2], box[3], w)]


def clahe(unit: np.ndarray) -> np.ndarray:
    """CLAHE of a grey ``[0, 1]`` float image ``(H, W)`` (16-bit OpenCV), returned as float32 in [0, 1]."""
    import cv2

    grey = np.round(np.clip(unit, 0.0, 1.0) * 65535.0).astype(np.uint16)
    out = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES).apply(grey)
    return out.astype(np.float32) / 65535.0


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of ``(H, W)`` by the disc ``dy² + dx² <= radius²`` (the browser uses the same)."""
    from scipy import ndimage

    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return ndimage.binary_dilation(mask, structure=dy * dy + dx * dx <= radius * radius)


def mask_radius(size: int) -> int:
    """Dilation radius in pixels of the lung mask on a ``size`` grid: :data:`MASK_DILATION` of the side."""
    return max(1, round(MASK_DILATION * size))


def classifier_frame(lungs: np.ndarray | None, spec: PreprocessSpec) -> Box | None:
    """The fractional box of the image that the classifier reads (None: the whole image)."""
    return lung_box(lungs, spec.lung_margin) if needs_lungs(spec) and lungs is not None else None


def paste_fraction(values: np.ndarray, box: Box | None, grid: tuple[int, int]) -> np.ndarray:
    """Map a map ``(h, w)`` over the classifier's frame back onto the whole image on ``grid`` ``(H, W)``:
    bilinear resize into the box, zero outside (the inverse of the crop, for heatmaps)."""
    import cv2

    box = box or (0.0, 1.0, 0.0, 1.0)
    out = np.zeros(grid, dtype=np.float32)
    rows, cols = _pixel_span(box[0], box[1], grid[0]), _pixel_span(box[2], box[3], grid[1])
    shape = (cols.stop - cols.start, rows.stop - rows.start)
    out[rows, cols] = cv2.resize(values.astype(np.float32), shape, interpolation=cv2.INTER_LINEAR)
    return out


def crop_to_frame(
    unit: np.ndarray, lungs: np.ndarray | None, spec: PreprocessSpec
) -> tuple[np.ndarray, np.ndarray | None]:
    """Step 1: the image ``(..., H, W)`` cropped to the classifier's frame, and the lung mask cropped
    alike (both unchanged when the recipe reads the whole image or no lungs were found)."""
    box = classifier_frame(lungs, spec)
    if box is None or lungs is None:
        return unit, lungs
    return np.ascontiguousarray(crop_fraction(unit, box)), crop_fraction(lungs, box)


def inside_mask(lungs: np.ndarray | None, spec: PreprocessSpec) -> np.ndarray | None:
    """Step 4's mask on the ``(S, S)`` grid: the cropped lungs, nearest-resized and dilated; None when
    the recipe does not mask (or no lungs were found)."""
    if spec.lung_roi != "mask" or lungs is None or not lungs.any():
        return None
    size = spec.input_size
    return dilate(resize_nearest(lungs, (size, size)), mask_radius(size))
