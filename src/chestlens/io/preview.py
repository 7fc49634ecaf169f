"""8-bit previews of images and atomic PNG writing (for ``chestlens demo`` and reports)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from chestlens.atomic import write_bytes_atomic
from chestlens.io.image import MedicalImage
from chestlens.io.windowing import lung_window

#: Longest side of a preview in pixels; larger images are downscaled (Lanczos).
PREVIEW_MAX_SIDE = 1024


def preview_array(image: MedicalImage, *, max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
    """uint8 ``(rows, cols)`` preview: ``[0, 1]`` images as they are, HU through the lung window.

    Volumes show their middle slice/frame. The longest side is at most ``max_side``.
    """
    pixels = image.pixels
    if pixels.ndim == 3:
        pixels = pixels[pixels.shape[0] // 2]
    unit = lung_window(pixels) if image.meta.pixel_unit == "HU" else np.clip(pixels, 0.0, 1.0)
    picture = Image.fromarray(np.round(unit * 255.0).astype(np.uint8))
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(picture)


def save_png_atomic(array: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a uint8 array as PNG atomically (see :mod:`chestlens.atomic`)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return write_bytes_atomic(Path(path), buffer.getvalue())
