"""PNG layers of a screening for the page: the image, and transparent heatmap / lung / lesion layers of
the same size that the page stacks and toggles; plus the pipeline's composite overlay (``summary``).

A 2-D screening is stored once as compact arrays (:data:`SOURCE`: the 8-bit display image, the heatmap,
the masks, as compressed ``.npz``, a few tens of KB) and each PNG is drawn on its first request, then
kept: answering a screening costs no drawing, and results nobody opens cost no PNG. A CT series gets the
pipeline's slice strip (``summary``) and lesion-burden plot (``burden``), drawn at once (the volume
itself is not kept). All pictures come from :mod:`chestlens.pipeline.overlay`'s helpers, so they match
``chestlens predict``.
"""

from __future__ import annotations

import io
import json

import numpy as np
from matplotlib import colormaps
from PIL import Image

from chestlens.io.image import ImageMeta, MedicalImage
from chestlens.io.preview import preview_array
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
#: Empty PNG bytes mark a layer that can be drawn but has not been requested yet.
NOT_DRAWN = b""


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def stored_layers(screening: Screening) -> dict[str, bytes]:
    """What to store for a screening: layer name -> PNG bytes, :data:`NOT_DRAWN`, or the :data:`SOURCE`."""
    if screening.image.is_volume:
        return {"summary": png_bytes(series_strip(screening)), "burden": png_bytes(burden_plot(screening))}
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


def _lesion_layer(screening: Screening, size: tuple[int, int]) -> np.ndarray:
    layer = np.zeros((*size, 4), dtype=np.uint8)
    labels = resize_nearest(screening.lesion_map, size)
    for k, label in enumerate(screening.lesion_labels, start=1):
        layer[labels == k] = (*_lesion_colour(label, k), round(MASK_ALPHA * 255))
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
        return png_bytes(Image.fromarray(_lesion_layer(screening, size), "RGBA"))
    raise KeyError(name)
