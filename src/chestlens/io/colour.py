"""Colour to grey, shared by the DICOM and raster readers."""

from __future__ import annotations

import numpy as np

#: ITU-R BT.601 luma weights for R, G, B.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: A pixel counts as coloured when its channels differ by more than this (in ``[0, 1]`` units, i.e.
#: 8 grey levels of 255), which is above JPEG chroma noise on grey pictures.
CHANNEL_TOLERANCE = 8.0 / 255.0
#: An image is "colour" when more than this fraction of its pixels are coloured.
COLOUR_PIXEL_FRACTION = 0.001


def rgb_to_grey(rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    """Grey from RGB in ``[0, 1]``.

    Args:
        rgb: float array ``(..., 3)`` with values in ``[0, 1]``.

    Returns:
        ``(grey, is_colour)``: grey float32 of shape ``rgb.shape[:-1]`` in ``[0, 1]`` (BT.601 luma)
        and whether the channels really differ (see :data:`CHANNEL_TOLERANCE`).
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    is_colour = bool(np.mean(spread > CHANNEL_TOLERANCE) > COLOUR_PIXEL_FRACTION)
    grey = np.clip(rgb @ LUMA_WEIGHTS, 0.0, 1.0)
    return grey.astype(np.float32, copy=False), is_colour
