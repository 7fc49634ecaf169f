"""Turn a :class:`~chestlens.io.MedicalImage` into network input, exactly as a bundle specifies.

This is the single implementation of inference preprocessing; training adds augmentation on top of the
same steps (see :mod:`chestlens.train`), and the ONNX/browser exports read the same
:class:`~chestlens.models.bundle.PreprocessSpec`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from chestlens.errors import ChestlensInputError
from chestlens.io.image import MedicalImage
from chestlens.models.bundle import PreprocessSpec


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


def resize_unit(unit: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(..., 1, H, W)`` grey tensors to ``(..., 1, size, size)``: bilinear with antialiasing.

    This is the one resize of chestlens preprocessing (``resize="stretch"``: aspect ratio not kept).
    """
    if unit.shape[-2:] == (size, size):
        return unit
    flat = unit.reshape(-1, 1, *unit.shape[-2:])
    flat = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return flat.reshape(*unit.shape[:-2], size, size)


def normalise(unit: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """Resize ``(..., 1, H, W)`` grey ``[0, 1]`` tensors to the input size and normalise per channel.

    Returns ``(..., in_chans, S, S)`` with ``S = spec.input_size``.
    """
    resized = resize_unit(unit, spec.input_size)
    shape = (*resized.shape[:-3], spec.in_chans, *resized.shape[-2:])
    mean = torch.tensor(spec.mean, dtype=resized.dtype).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=resized.dtype).view(-1, 1, 1)
    return (resized.expand(shape) - mean) / std


def preprocess(image: MedicalImage, spec: PreprocessSpec) -> torch.Tensor:
    """One image to a ``(in_chans, S, S)`` float32 tensor ready for the network."""
    unit = torch.from_numpy(np.ascontiguousarray(to_unit_range(image, spec)))[None]
    return normalise(unit, spec)
