"""Lungs in CT from Hounsfield units alone: the classic threshold rule, no model.

For each axial slice ``(rows, cols)``:

1. body = the largest connected component of tissue (HU >= :data:`AIR_MAX_HU`), its holes filled. The
   CT table and its foam mattress are separate components and drop out.
2. lungs = air (HU < :data:`AIR_MAX_HU`) inside the filled body, i.e. air not connected to the air
   around the patient; components smaller than :data:`MIN_COMPONENT_FRACTION` of the slice are removed
   and holes smaller than :data:`MAX_VESSEL_HOLE_FRACTION` (vessels, airway walls) are filled.

The trachea and main bronchi are air inside the body too and are part of the mask; bowel gas in a slice
below the diaphragm is as well (the rule cannot tell them apart, :mod:`chestlens.pipeline.gate` judges
the amount).

Cropped fields of view: when the reconstruction is smaller than the patient (e.g. pydicom's
``CT_small.dcm``, 85 mm across), the lungs run into the image edge and would count as outside air. The
image edge therefore counts as body wherever a run of air along the edge is enclosed by body at both
ends and is shorter than :data:`MAX_EDGE_GAP_FRACTION` of the image perimeter; air so enclosed that
reads as pure air (median below :data:`OUTSIDE_AIR_MAX_HU`, e.g. outside air in a corner) is not lung.
A full field of view, where the body does not reach the edge, is unaffected.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

#: Air and lung parenchyma are below this (HU); tissue, fluid and bone are at or above it.
AIR_MAX_HU = -320.0
#: Lung components smaller than this fraction of the slice's pixels are dropped (noise, small gas pockets).
MIN_COMPONENT_FRACTION = 5e-4
#: Holes in the lung mask up to this fraction of the slice's pixels are filled (vessels, bronchial walls).
MAX_VESSEL_HOLE_FRACTION = 2e-3
#: Air runs along the image edge, enclosed by body at both ends, up to this fraction of the perimeter are
#: closed (a field of view that cuts through the chest).
MAX_EDGE_GAP_FRACTION = 0.25
#: Air enclosed that way is outside air, not lung, when its median is below this (HU): outside air reads
#: about -1000 HU, aerated lung -950 to -700 HU.
OUTSIDE_AIR_MAX_HU = -950.0
#: In a volume, 3-D air components smaller than this fraction of the largest one are dropped: the lungs
#: (joined through the airways) are the largest; bowel gas and other pockets are far smaller.
MIN_VOLUME_COMPONENT_SHARE = 0.1


def lung_mask_from_hu(hu: np.ndarray, *, advance: Callable[[int], None] | None = None) -> np.ndarray:
    """Lung mask of an axial CT slice or volume by the HU rule (see the module docstring).

    Args:
        hu: Hounsfield units, ``(rows, cols)`` for one slice or ``(slices, rows, cols)`` for a volume
            (each slice is processed on its own, then small 3-D components are dropped).
        advance: volumes only: called with 1 after each slice (progress).

    Returns:
        Boolean mask of the same shape, True in the lungs (and airways).

    Raises:
        ValueError: ``hu`` is not 2-D or 3-D.
    """
    hu = np.asarray(hu)
    if hu.ndim == 2:
        return _slice_lungs(hu)
    if hu.ndim == 3:
        if not len(hu):
            return np.zeros(hu.shape, dtype=bool)
        masks = []
        for hu_slice in hu:
            masks.append(_slice_lungs(hu_slice))
            if advance is not None:
                advance(1)
        return _largest_3d_components(np.stack(masks))
    raise ValueError(f"expected a CT slice (rows, cols) or volume (slices, rows, cols), got shape {hu.shape}")


def _largest_3d_components(mask: np.ndarray) -> np.ndarray:
    """Keep the 3-D components of a ``(slices, rows, cols)`` mask of at least
    :data:`MIN_VOLUME_COMPONENT_SHARE` of the largest one (removes bowel gas below the diaphragm)."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= MIN_VOLUME_COMPONENT_SHARE * sizes.max()
    keep[0] = False
    return keep[labels]


def body_mask_from_hu(hu: np.ndarray) -> np.ndarray:
    """Body of one axial slice ``(rows, cols)`` in HU: the largest tissue component, holes filled (bool)."""
    tissue = np.asarray(hu) >= AIR_MAX_HU
    labels, count = ndimage.label(tissue)
    if count == 0:
        return np.zeros(tissue.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    body = labels == int(np.argmax(sizes))
    framed = np.pad(body, 1, mode="edge")
    _close_edge_gaps(framed)
    return ndimage.binary_fill_holes(framed)[1:-1, 1:-1]


def _slice_lungs(hu: np.ndarray) -> np.ndarray:
    lungs = body_mask_from_hu(hu) & (hu < AIR_MAX_HU)
    labels, count = ndimage.label(lungs)
    if count == 0:
        return lungs
    keep = np.bincount(labels.ravel()) >= MIN_COMPONENT_FRACTION * hu.size
    keep[0] = False
    on_edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    on_edge = on_edge[(on_edge > 0) & keep[on_edge]]
    if on_edge.size:  # only with a cropped field of view (module docstring)
        keep[on_edge] = np.asarray(ndimage.median(hu, labels, on_edge)) >= OUTSIDE_AIR_MAX_HU
    return _fill_small_holes(keep[labels], MAX_VESSEL_HOLE_FRACTION * hu.size)


def _fill_small_holes(mask: np.ndarray, max_pixels: float) -> np.ndarray:
    """``mask`` (2-D bool) with its enclosed holes of at most ``max_pixels`` pixels filled."""
    holes, count = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
    if count == 0:
        return mask
    small = np.bincount(holes.ravel()) <= max_pixels
    small[0] = False
    return mask | small[holes]


def _edge_ring(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the outermost pixels of an array, clockwise from the top-left corner."""
    rows, cols = shape
    top = [(0, c) for c in range(cols)]
    right = [(r, cols - 1) for r in range(1, rows)]
    bottom = [(rows - 1, c) for c in range(cols - 2, -1, -1)]
    left = [(r, 0) for r in range(rows - 2, 0, -1)]
    ring = np.array(top + right + bottom + left)
    return ring[:, 0], ring[:, 1]


def _close_edge_gaps(framed: np.ndarray) -> None:
    """In place: set to True the runs of False along the outermost ring of ``framed`` (2-D bool) that
    have True at both ends and are at most :data:`MAX_EDGE_GAP_FRACTION` of the ring long."""
    r, c = _edge_ring(framed.shape)
    ring = framed[r, c]
    if ring.all() or not ring.any():
        return
    start = int(np.argmax(ring))  # rotate so that the ring starts on body: every air run is then closed
    rolled = np.roll(ring, -start)
    edges = np.flatnonzero(np.diff(np.append(rolled, True).astype(np.int8)))
    gaps = edges.reshape(-1, 2)  # (last body pixel before a gap, last pixel of the gap)
    for before, last in gaps:
        if last - before <= MAX_EDGE_GAP_FRACTION * ring.size:
            rolled[before + 1 : last + 1] = True
    framed[r, c] = np.roll(rolled, start)
