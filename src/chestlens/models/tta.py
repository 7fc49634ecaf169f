"""Test-time augmentation by flips and small rescalings: one definition for the inference graph and for
evaluation.

A segmenter bundle whose ``preprocess.tta`` names augmentations runs its network on the normalised input
and on each variant of it, maps each variant's logits back onto the input grid and averages them all
(logit space, so a label map from the mean logits is the usual argmax or ``sigmoid >= 0.5``):

* ``hflip`` / ``vflip``: the input flipped left-right / up-down, the logits flipped back. Exact on the
  pixel grid.
* ``scale_up`` / ``scale_down``: the input resized (bilinear, half-pixel centres, no antialiasing) to one
  encoder stride (:data:`SCALE_STEP_PX`) more / fewer pixels per side, so the encoder still divides it:
  352 px reads 384 / 320 (x1.09 / x0.91), 512 px 544 / 480. The logits are resized back the same way.
  Both resizes are ONNX ``Resize`` nodes of the graph, so every runtime applies them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from chestlens.errors import ChestlensInputError

#: The spatial axis each flip reverses on ``(N, C, H, W)`` tensors.
FLIP_AXES = {"hflip": -1, "vflip": -2}
#: Pixels added (``scale_up``) or removed (``scale_down``) per side: the encoders' output stride.
SCALE_STEP_PX = 32
SCALE_SIGNS = {"scale_up": 1, "scale_down": -1}


def _resized(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _augmented_logits(
    network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, name: str
) -> torch.Tensor:
    """``network`` on the ``name`` variant of ``x`` ``(N, C, H, W)``, its logits mapped back to ``(H, W)``."""
    if name in FLIP_AXES:
        axis = FLIP_AXES[name]
        return network(x.flip(axis)).flip(axis)
    height, width = x.shape[-2:]
    step = SCALE_SIGNS[name] * SCALE_STEP_PX
    if min(height, width) + step <= 0:
        raise ChestlensInputError(None, f"test-time {name}: a {height} x {width} input is too small for it")
    return _resized(network(_resized(x, (height + step, width + step))), (height, width))


def tta_logits(
    network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, names: Sequence[str]
) -> torch.Tensor:
    """Mean of ``network(x)`` and, for each augmentation in ``names``, its logits mapped back.

    Args:
        network: maps normalised input ``(N, C, H, W)`` to logits ``(N, K, H, W)``.
        x: the normalised input.
        names: names in :data:`FLIP_AXES` or :data:`SCALE_SIGNS`; empty gives ``network(x)``.
    """
    logits = network(x)
    if names and logits.ndim != 4:
        raise ChestlensInputError(None, "test-time augmentation (preprocess.tta) applies to segmenters only")
    for name in names:
        logits = logits + _augmented_logits(network, x, name)
    return logits / (1 + len(names))
