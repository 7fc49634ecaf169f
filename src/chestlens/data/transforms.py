"""Turn a :class:`~chestlens.io.MedicalImage` into network input, exactly as a bundle specifies.

This is the single implementation of inference preprocessing; training adds augmentation on top of the
same steps (see :mod:`chestlens.train`), and the ONNX/browser exports read the same
:class:`~chestlens.preprocess.spec.PreprocessSpec`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from chestlens.io.image import MedicalImage
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.preprocess.units import to_unit_range


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
