"""PNG layers of a screening for the page: the image, and transparent heatmap / lung / lesion layers of
the same size that the page stacks and toggles; plus the pipeline's composite overlay (``summary``).

A CT series gets the pipeline's slice strip (``summary``) and lesion-burden plot (``burden``) instead.
All layers are drawn by :mod:`chestlens.pipeline.overlay`'s helpers, so they match ``chestlens predict``.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from PIL import Image

from chestlens.io.preview import preview_array
from chestlens.pipeline.measure import resize_nearest
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
from chestlens.pipeline.screener import Screening

LAYERS_2D = ("image", "heatmap", "lungs", "lesions", "summary")
LAYERS_SERIES = ("summary", "burden")


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def _rgba(size: tuple[int, int]) -> np.ndarray:
    return np.zeros((*size, 4), dtype=np.uint8)


def _heatmap_layer(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Jet colours with opacity rising with the heat (``HEATMAP_ALPHA`` at the maximum)."""
    heat = _resize_smooth(heatmap, size).clip(0, 1)
    layer = (colormaps["jet"](heat) * 255).astype(np.uint8)
    layer[..., 3] = np.round(heat * HEATMAP_ALPHA * 255).astype(np.uint8)
    return layer


def _lung_layer(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    layer = _rgba(size)
    layer[_contour(resize_nearest(mask, size))] = (*LUNG_COLOUR, 255)
    return layer


def _lesion_layer(screening: Screening, size: tuple[int, int]) -> np.ndarray:
    layer = _rgba(size)
    labels = resize_nearest(screening.lesion_map, size)
    for k, label in enumerate(screening.lesion_labels, start=1):
        layer[labels == k] = (*_lesion_colour(label, k), round(MASK_ALPHA * 255))
    return layer


def render_layers(screening: Screening) -> dict[str, bytes]:
    """PNG bytes by layer name (blocking, about 0.1 s for a radiograph: run it in a worker thread)."""
    if screening.image.is_volume:
        return {"summary": png_bytes(series_strip(screening)), "burden": png_bytes(burden_plot(screening))}
    grey = preview_array(screening.image, max_side=DISPLAY_SIDE)
    size = grey.shape
    layers = {"image": png_bytes(Image.fromarray(grey)), "summary": png_bytes(overlay_image(screening))}
    if screening.heatmap is not None:
        layers["heatmap"] = png_bytes(Image.fromarray(_heatmap_layer(screening.heatmap, size), "RGBA"))
    if screening.lung_mask is not None and screening.lung_mask.ndim == 2:
        layers["lungs"] = png_bytes(Image.fromarray(_lung_layer(screening.lung_mask, size), "RGBA"))
    if screening.lesion_map is not None and screening.lesion_map.ndim == 2:
        layers["lesions"] = png_bytes(Image.fromarray(_lesion_layer(screening, size), "RGBA"))
    return layers
