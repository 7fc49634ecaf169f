"""Lungs in CT from Hounsfield units alone: the classic threshold rule, no model.

For each axial slice ``(rows, cols)``:

1. body = the largest connected component of tissue (HU >= :data:`AIR_MAX_HU`), its holes filled. The
   CT table and its foam mattress are separate components and drop out.
2. lungs = air (HU < :data:`AIR_MAX_HU`) inside the filled body, i.e. air not connected to the air
   around the patient; components smaller than :data:`MIN_COMPONENT_FRACTION` of the slice are removed
   and holes smaller than :data:`MAX_VESSEL_HOLE_FRACTION` (vessels, airway walls) are filled.

The trachea and main bronchi are air inside the body too and are part of the mask; bowel gas in a slice
below the diaphragm is as well (one slice cannot tell them apart, :mod:`chestlens.pipeline.gate` judges
the amount).

A volume ``(slices, rows, cols)``, slices in the reader's ascending-position order, then tells the lungs
from gas below the diaphragm (stomach bubble, bowel) in 3-D (:func:`lungs_in_volume`):

3. The lungs reach the level of the hila, the mass centre of the chest's air; gas under the diaphragm lies
   wholly below the dome, so never spans that level. A 3-D air component is lung when its slice range holds
   the slice of the largest component's mass centre and it holds at least
   :data:`MIN_VOLUME_COMPONENT_SHARE` of the largest component. Both lungs pass even when the airways do
   not join them in the mask; the trachea passes with the lungs it joins.
4. Gas joined to a lung through a thin bridge (partial volume through a diaphragm thinner than the slice)
   would pass as part of that lung. Every component is therefore first eroded (a disk of
   :data:`BRIDGE_RADIUS_FRACTION` of the slice width in plane, one slice up and down), which cuts such
   bridges while the main bronchi (10-16 mm) survive; an eroded core that fails the level rule of step 3
   and holds at least :data:`MIN_GAS_CORE_SHARE` of the largest core is gas, and it is cut out of the
   mask with a margin of one more pixel than the erosion before step 3 is applied.

This relies on the slices being in order along the body axis (either direction): a series sorted by file
name in a wrong order breaks it (the reader warns of such a series).

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
#: In-plane erosion radius that cuts thin bridges between lung and gas, as a fraction of the slice's larger
#: side: 4 pixels of 512, about 3 mm with a 380 mm field of view.
BRIDGE_RADIUS_FRACTION = 1 / 128
#: An eroded core below the lungs' level counts as gas (and is cut out) from this fraction of the largest
#: core on (about 40 mL of 4 L of lungs): smaller stray cores are more likely bits of a lung base, and a
#: wrong cut there costs more lung than the gas it would remove.
MIN_GAS_CORE_SHARE = 0.01


def lung_mask_from_hu(hu: np.ndarray, *, advance: Callable[[int], None] | None = None) -> np.ndarray:
    """Lung mask of an axial CT slice or volume by the HU rule (see the module docstring).

    Args:
        hu: Hounsfield units, ``(rows, cols)`` for one slice or ``(slices, rows, cols)`` for a volume
            in the reader's slice order (each slice on its own, then 3-D: :func:`lungs_in_volume`).
        advance: volumes only: called with 1 after each slice (progress).

    Returns:
        Boolean mask of the same shape, True in the lungs (and airways); in a volume without the gas below
        the diaphragm (module docstring, steps 3 and 4).

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
        return lungs_in_volume(np.stack(masks))
    raise ValueError(f"expected a CT slice (rows, cols) or volume (slices, rows, cols), got shape {hu.shape}")


def lungs_in_volume(mask: np.ndarray) -> np.ndarray:
    """The lungs of a ``(slices, rows, cols)`` bool air mask (steps 1-2 slice by slice), without the gas
    below the diaphragm: steps 3 and 4 of the module docstring."""
    if not mask.any():
        return mask
    radius = max(1, round(BRIDGE_RADIUS_FRACTION * max(mask.shape[1:])))
    cores, count = ndimage.label(ndimage.binary_erosion(mask, structure=_bridge_structure(radius)))
    if count > 1:
        sizes = np.bincount(cores.ravel())
        gas = ~_spans_lung_level(cores, count) & (sizes >= MIN_GAS_CORE_SHARE * sizes[1:].max())
        gas[0] = False
        if gas.any():
            mask = mask & ~ndimage.binary_dilation(gas[cores], structure=_bridge_structure(radius + 1))
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = (sizes >= MIN_VOLUME_COMPONENT_SHARE * sizes[1:].max()) & _spans_lung_level(labels, count)
    keep[0] = False
    return keep[labels]


def _bridge_structure(radius: int) -> np.ndarray:
    """``(3, 2r + 1, 2r + 1)`` bool, r = ``radius``: an in-plane disk of r pixels, one voxel up, one down."""
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    structure = np.zeros((3, 2 * radius + 1, 2 * radius + 1), dtype=bool)
    structure[1] = yy**2 + xx**2 <= radius**2
    structure[0, radius, radius] = structure[2, radius, radius] = True
    return structure


def _spans_lung_level(labels: np.ndarray, count: int) -> np.ndarray:
    """``(count + 1,)`` bool: whether each labelled 3-D component's slice range holds the slice of the
    mass centre of the largest one (index 0, the background, is False)."""
    index = np.arange(1, count + 1)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    largest = int(np.argmax(sizes[1:])) + 1
    level = ndimage.center_of_mass(labels == largest)[0]
    boxes = ndimage.find_objects(labels, max_label=count)
    spans = np.zeros(count + 1, dtype=bool)
    for k, box in zip(index, boxes, strict=True):
        spans[k] = box is not None and box[0].start <= level <= box[0].stop - 1
    return spans


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
