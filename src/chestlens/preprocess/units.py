"""Decoded pixels to grey ``[0, 1]`` float32: the input every model graph takes."""

from __future__ import annotations

import numpy as np

from chestlens.errors import ChestlensInputError
from chestlens.io.image import MedicalImage
from chestlens.preprocess.spec import PreprocessSpec


def to_unit_range(image: MedicalImage, spec: PreprocessSpec) -> np.ndarray:
    """Grey pixels in ``[0, 1]``, shape ``(rows, cols)``: CT is windowed with ``spec.ct_window``."""
    pixels = image.pixels
    if pixels.ndim != 2:
        raise ChestlensInputError(
            image.meta.source_path,
            f"expected one 2-D image, got an array of shape {pixels.shape}; pick a slice",
        )
    if image.meta.pixel_unit == "HU":
        return window_hu(pixels, spec, where=image.meta.source_path)
    return pixels.astype(np.float32, copy=False)


def window_hu(hu: np.ndarray, spec: PreprocessSpec, *, where: str | None = None) -> np.ndarray:
    """CT values (HU, any shape) to float32 ``[0, 1]`` through ``spec.ct_window`` (centre, width)."""
    if spec.ct_window is None:
        raise ChestlensInputError(where, "CT input but the model defines no CT window")
    center, width = spec.ct_window
    return np.clip((hu - (center - width / 2.0)) / width, 0.0, 1.0).astype(np.float32, copy=False)
