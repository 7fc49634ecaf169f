"""Lung-field preprocessing on PyTorch tensors, for training and evaluation: the steps of
:mod:`chestlens.preprocess.lung_roi` (which holds the geometry and the reasons) applied to ``(1, H, W)``
tensors. Training (:mod:`chestlens.data.tensors`), evaluation and the PyTorch runtime call
:func:`lung_roi_input` with the lung mask that the lung segmenter bundle gives on its own grid.
"""

from __future__ import annotations

import numpy as np
import torch

from chestlens.data.transforms import resize_unit
from chestlens.preprocess.lung_roi import MASK_FILL, clahe, crop_to_frame, inside_mask
from chestlens.preprocess.resize import resize_nearest
from chestlens.preprocess.spec import PreprocessSpec


def lung_roi_input(unit: torch.Tensor, lungs: np.ndarray | None, spec: PreprocessSpec) -> torch.Tensor:
    """Grey ``[0, 1]`` image ``(1, H, W)`` to the ``(1, S, S)`` image the classifier reads.

    Args:
        unit: float32 ``(1, H, W)`` in ``[0, 1]``, any resolution.
        lungs: bool lung mask ``(h, w)`` on any grid covering the same field of view (the lung
            segmenter's), or None when ``spec`` needs none.
        spec: the classifier's preprocessing (``lung_roi``, ``lung_margin``, ``equalise``,
            ``input_size``).
    """
    return lung_roi_with_mask(unit, lungs, spec)[0]


def crop_to_lungs(
    unit: torch.Tensor, lungs: np.ndarray | None, spec: PreprocessSpec
) -> tuple[torch.Tensor, np.ndarray | None]:
    """Step 1: the image ``(1, H, W)`` cropped to the classifier's frame, and the lung mask cropped
    alike (both unchanged when the recipe reads the whole image or no lungs were found)."""
    cropped, cropped_lungs = crop_to_frame(unit.numpy(), lungs, spec)
    return torch.from_numpy(cropped), cropped_lungs


def lung_roi_with_mask(
    unit: torch.Tensor, lungs: np.ndarray | None, spec: PreprocessSpec
) -> tuple[torch.Tensor, np.ndarray | None]:
    """:func:`lung_roi_input` and the lung mask on the same ``(S, S)`` grid (None without ``lungs``)."""
    size = spec.input_size
    unit, lungs = crop_to_lungs(unit, lungs, spec)
    image = resize_unit(unit, size)
    if spec.equalise == "clahe":
        image = torch.from_numpy(clahe(image[0].numpy()))[None]
    inside = inside_mask(lungs, spec)
    if inside is not None:
        image = torch.where(torch.from_numpy(inside)[None], image, torch.full_like(image, MASK_FILL))
    grid = None if lungs is None else resize_nearest(lungs, (size, size))
    return image.float(), grid
