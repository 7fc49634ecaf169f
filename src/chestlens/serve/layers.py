"""PNG layers of a screening for the page: the image, and transparent heatmap / lung / lesion layers of
the same size that the page stacks and toggles; plus the pipeline's composite overlay (``summary``).

A 2-D screening is stored once as compact arrays (:data:`SOURCE`: the 8-bit display image, the heatmap,
the masks, as compressed ``.npz``, a few tens of KB) and each PNG is drawn on its first request, then
kept: answering a screening costs no drawing, and results nobody opens cost no PNG. A CT series gets the
pipeline's slice strip (``summary``) and lesion-burden plot (``burden``), drawn at once, plus its slices
(:data:`SERIES`, see :func:`series_source`): each slice's display image, lung mask and lesion labels at
:data:`SLICE_SIDE` pixels and its areas, from which a slice's layers are drawn on every request
(:func:`draw_slice`; never kept: a series has hundreds). All pictures come from
:mod:`chestlens.pipeline.overlay`'s helpers, so they match ``chestlens predict``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from PIL import Image

from chestlens.io.image import ImageMeta, MedicalImage
from chestlens.io.preview import preview_array
from chestlens.pipeline.measure import pixel_area_mm2
from chestlens.pipeline.overlay import (
    DISPLAY_SIDE,
    HEATMAP_ALPHA,
    LUNG_COLOUR,
    MASK_ALPHA,
    _contour,
    _lesion_colour,
    _resize_smooth,
    burden_plot,
    overlay_image,
    series_strip,
)
from chestlens.pipeline.schema import ScreeningResult
from chestlens.pipeline.screener import Screening
from chestlens.preprocess.resize import resize_nearest

#: The stored arrays of a 2-D screening (not a picture: never served).
SOURCE = "source.npz"
#: The stored slices of a CT series (not a picture: never served as such; see :func:`series_source`).
SERIES = "series.npz"
#: The stored sources: layers of a screening that are not pictures.
SOURCES = frozenset({SOURCE, SERIES})
#: Longest side (pixels) of the stored slices of a series: half a 512 x 512 CT slice, about 37 KB per
#: slice (PNG) with its masks, 5.4 MB for 148 slices; the overlays come from masks on coarser grids
#: anyway (the lesion segmenter's 352 px).
SLICE_SIDE = 256
#: Empty PNG bytes mark a layer that can be drawn but has not been requested yet.
NOT_DRAWN = b""


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def stored_layers(screening: Screening) -> dict[str, bytes]:
    """What to store for a screening: layer name -> PNG bytes, :data:`NOT_DRAWN`, or the stored arrays
    (:data:`SOURCE` of a 2-D image, :data:`SERIES` of a CT series)."""
    if screening.image.is_volume:
        return {
            "summary": png_bytes(series_strip(screening)),
            "burden": png_bytes(burden_plot(screening)),
            SERIES: series_source(screening),
        }
    arrays = {"grey": preview_array(screening.image, max_side=DISPLAY_SIDE)}
    layers = {"image": NOT_DRAWN, "summary": NOT_DRAWN}
    if screening.heatmap is not None:
        arrays["heatmap"] = screening.heatmap.astype(np.float32)
        layers["heatmap"] = NOT_DRAWN
    if screening.lung_mask is not None and screening.lung_mask.ndim == 2:
        arrays["lung_mask"] = screening.lung_mask
        layers["lungs"] = NOT_DRAWN
    if screening.lesion_map is not None and screening.lesion_map.ndim == 2:
        arrays["lesion_map"] = screening.lesion_map
        arrays["lesion_labels"] = np.frombuffer(json.dumps(screening.lesion_labels).encode(), np.uint8)
        layers["lesions"] = NOT_DRAWN
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return {**layers, SOURCE: buffer.getvalue()}


def _unpack(source: bytes, result: ScreeningResult) -> Screening:
    """The stored arrays as a :class:`Screening` the overlay helpers can draw (display image only)."""
    arrays = np.load(io.BytesIO(source))
    grey = arrays["grey"]
    meta = ImageMeta(
        source_path=result.input.source,
        format="png",
        rows=grey.shape[0],
        cols=grey.shape[1],
        pixel_unit="unit",
    )
    labels = json.loads(arrays["lesion_labels"].tobytes()) if "lesion_labels" in arrays else []
    return Screening(
        result=result,
        image=MedicalImage(pixels=grey.astype(np.float32) / 255.0, meta=meta),
        heatmap=arrays.get("heatmap"),
        lung_mask=arrays.get("lung_mask"),
        lesion_map=arrays.get("lesion_map"),
        lesion_labels=labels,
    )


def _heatmap_layer(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Jet colours with opacity rising with the heat (``HEATMAP_ALPHA`` at the maximum)."""
    heat = _resize_smooth(heatmap, size).clip(0, 1)
    layer = (colormaps["jet"](heat) * 255).astype(np.uint8)
    layer[..., 3] = np.round(heat * HEATMAP_ALPHA * 255).astype(np.uint8)
    return layer


def _lung_layer(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    layer = np.zeros((*size, 4), dtype=np.uint8)
    layer[_contour(resize_nearest(mask, size))] = (*LUNG_COLOUR, 255)
    return layer


def _lesion_layer(lesion_map: np.ndarray, labels: list[str], size: tuple[int, int]) -> np.ndarray:
    """Each lesion class ``k`` of the label map ``(h, w)`` (``labels[k - 1]``) in its colour at
    ``MASK_ALPHA``, transparent elsewhere: RGBA ``(*size, 4)``."""
    layer = np.zeros((*size, 4), dtype=np.uint8)
    grid = resize_nearest(lesion_map, size)
    for k, label in enumerate(labels, start=1):
        layer[grid == k] = (*_lesion_colour(label, k), round(MASK_ALPHA * 255))
    return layer


def draw_layer(name: str, source: bytes, result: ScreeningResult) -> bytes:
    """PNG of one layer of a 2-D screening from its stored arrays (blocking: run it in a worker thread)."""
    screening = _unpack(source, result)
    grey = screening.image.pixels
    size = grey.shape
    if name == "image":
        return png_bytes(Image.fromarray(np.round(grey * 255).astype(np.uint8)))
    if name == "summary":
        return png_bytes(overlay_image(screening))
    if name == "heatmap":
        return png_bytes(Image.fromarray(_heatmap_layer(screening.heatmap, size), "RGBA"))
    if name == "lungs":
        return png_bytes(Image.fromarray(_lung_layer(screening.lung_mask, size), "RGBA"))
    if name == "lesions":
        lesions = _lesion_layer(screening.lesion_map, screening.lesion_labels, size)
        return png_bytes(Image.fromarray(lesions, "RGBA"))
    raise KeyError(name)


# ------------------------------------------------------------------------------------------- CT series
def series_layers(result: ScreeningResult) -> list[str]:
    """The per-slice layers stored for a CT series: ``image``; ``lungs`` when the result has lungs;
    ``lesions`` when lesion segmentation ran. From the result alone, so that the screening's response
    can name them without reading the stored slices (a rejected series has the image only, as its result
    has no lungs)."""
    layers = ["image"]
    if result.lungs is not None:
        layers.append("lungs")
    if result.lesions is not None and result.lesions.ran:
        layers.append("lesions")
    return layers


def _member(layer: str, k: int) -> str:
    """The name of slice ``k``'s array of ``layer`` in the stored series."""
    return f"{layer}_{k}"


def series_source(screening: Screening) -> bytes:
    """The stored slices of a CT series (:data:`SERIES`, compressed ``.npz``), with everything the slice
    routes answer, computed once here.

    Per slice ``k`` (volume order, inferior first): ``image_k``, the display image (lung window for HU,
    8-bit, longer side at most :data:`SLICE_SIDE`) as PNG bytes, served as they are; ``lungs_k``, the lung
    mask (bool) and ``lesions_k``, the lesion label map (uint8, 0 background, ``j`` =
    ``lesion_labels[j - 1]``), both resized nearest-neighbour to the image's grid, when
    :func:`series_layers` names them. For the series: ``grid`` = ``(slices, height, width)`` of the
    stored images; ``drawn`` ``(slices, 2)`` bool, whether the lung / lesion layer of a slice shows
    anything; ``positions_mm`` ``(slices,)``, each slice's position along the slice normal (the reader's
    sort key, mm), when known; ``lung_area_mm2`` ``(slices,)`` and ``lesion_area_mm2``
    ``(slices, labels)``, measured on the masks' own grids, when the pixel spacing is known;
    ``lesion_labels``, JSON bytes (empty without the lesions layer).
    """
    image, result = screening.image, screening.result
    layers = series_layers(result)
    count = len(image.pixels)
    greys = [preview_array(MedicalImage(pixels, image.meta), max_side=SLICE_SIDE) for pixels in image.pixels]
    arrays = {_member("image", k): np.frombuffer(_png(grey), np.uint8) for k, grey in enumerate(greys)}
    size = greys[0].shape
    drawn = np.zeros((count, 2), dtype=bool)
    lungs, lesions = screening.lung_mask, screening.lesion_map
    if "lungs" in layers and lungs is not None:
        grid = resize_nearest(lungs, size)
        drawn[:, 0] = grid.any(axis=(1, 2))
        arrays.update({_member("lungs", k): mask for k, mask in enumerate(grid)})
        unit = pixel_area_mm2(image.meta, lungs.shape[-2:])
        if unit is not None:
            arrays["lung_area_mm2"] = lungs.sum(axis=(1, 2)) * unit
    labels = screening.lesion_labels if "lesions" in layers else []
    if "lesions" in layers and lesions is not None:
        grid = resize_nearest(lesions, size)
        drawn[:, 1] = grid.any(axis=(1, 2))
        arrays.update({_member("lesions", k): labelled for k, labelled in enumerate(grid)})
        unit = pixel_area_mm2(image.meta, lesions.shape[-2:])
        if unit is not None:
            counts = [(lesions == j).sum(axis=(1, 2)) for j in range(1, len(labels) + 1)]
            arrays["lesion_area_mm2"] = np.stack(counts, axis=1) * unit
    positions = image.meta.slice_positions_mm
    if positions is not None and len(positions) == count:
        arrays["positions_mm"] = np.asarray(positions, dtype=np.float64)
    arrays["grid"] = np.asarray([count, *size], dtype=np.int64)
    arrays["drawn"] = drawn
    arrays["lesion_labels"] = np.frombuffer(json.dumps(labels).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _png(grey: np.ndarray) -> bytes:
    """A grey picture as PNG, compressed harder than :func:`png_bytes` (it is stored, not sent once)."""
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class SeriesSlice:
    """What the stored series says about one slice (areas in mm², None without a pixel spacing)."""

    position_mm: float | None
    lung_area_mm2: float | None
    lesion_area_mm2: dict[str, float] | None
    layers: list[str]


@dataclass(frozen=True, slots=True)
class SeriesSlices:
    """The stored slices of a series: their number, image size (pixels), the lesion labels (label ``j``
    of a lesion map is ``lesion_labels[j - 1]``) and per-slice facts."""

    count: int
    rows: int
    cols: int
    lesion_labels: list[str]
    slices: list[SeriesSlice]


def series_slices(source: bytes) -> SeriesSlices:
    """The per-slice facts of a stored series (:func:`series_source`), without decoding any slice."""
    with np.load(io.BytesIO(source)) as arrays:
        count, rows, cols = (int(v) for v in arrays["grid"])
        drawn = arrays["drawn"]
        labels = json.loads(arrays["lesion_labels"].tobytes())
        positions = arrays.get("positions_mm")
        lung_area = arrays.get("lung_area_mm2")
        lesion_area = arrays.get("lesion_area_mm2")
    slices = [
        SeriesSlice(
            position_mm=None if positions is None else float(positions[k]),
            lung_area_mm2=None if lung_area is None else float(lung_area[k]),
            lesion_area_mm2=None
            if lesion_area is None
            else {label: float(area) for label, area in zip(labels, lesion_area[k], strict=True)},
            layers=["image", *(name for name, on in zip(("lungs", "lesions"), drawn[k], strict=True) if on)],
        )
        for k in range(count)
    ]
    return SeriesSlices(count=count, rows=rows, cols=cols, lesion_labels=labels, slices=slices)


def draw_slice(source: bytes, k: int, layer: str) -> bytes | None:
    """PNG of ``layer`` of slice ``k`` of a stored series, or None when the series has no such slice or
    layer (blocking: run it in a worker thread). ``image``: the stored grey PNG; ``lungs``: the lung
    contour; ``lesions``: the lesion regions in their colours; both transparent elsewhere, of the image's
    size."""
    with np.load(io.BytesIO(source)) as arrays:
        name = _member(layer, k)
        if name not in arrays:
            return None
        if layer == "image":
            return arrays[name].tobytes()
        if layer == "lungs":
            mask = arrays[name]
            return png_bytes(Image.fromarray(_lung_layer(mask, mask.shape), "RGBA"))
        labels = json.loads(arrays["lesion_labels"].tobytes())
        lesion_map = arrays[name]
        return png_bytes(Image.fromarray(_lesion_layer(lesion_map, labels, lesion_map.shape), "RGBA"))
