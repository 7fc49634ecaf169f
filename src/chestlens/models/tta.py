"""Test-time augmentation by flips: one definition for the inference graph and for evaluation.

A segmenter bundle whose ``preprocess.tta`` names flips runs its network on the normalised input and on
each flip of it; the logits of a flipped input are flipped back and all are averaged (logit space, so a
label map from the mean logits is the usual argmax or ``sigmoid >= 0.5``). Flips are exact on the pixel
grid, so the averaged map is aligned with the input. Small rescalings are not offered: the U-Net's input
must stay a multiple of 32, and a rescaled pass needs two extra resizes that the graph would have to
reproduce bit for bit in the browser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from chestlens.errors import ChestlensInputError

#: The spatial axis each flip reverses on ``(N, C, H, W)`` tensors.
FLIP_AXES = {"hflip": -1, "vflip": -2}


def tta_logits(
    network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, flips: Sequence[str]
) -> torch.Tensor:
    """Mean of ``network(x)`` and, for each flip in ``flips``, ``network(flip(x))`` flipped back.

    Args:
        network: maps normalised input ``(N, C, H, W)`` to logits ``(N, K, H, W)``.
        x: the normalised input.
        flips: names in :data:`FLIP_AXES`; empty gives ``network(x)``.
    """
    logits = network(x)
    if flips and logits.ndim != 4:
        raise ChestlensInputError(None, "test-time flips (preprocess.tta) apply to segmenters only")
    for name in flips:
        axis = FLIP_AXES[name]
        logits = logits + network(x.flip(axis)).flip(axis)
    return logits / (1 + len(flips))
