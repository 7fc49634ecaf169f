"""Class-activation maps with pytorch-grad-cam, computed in the same pass as the classification.

One forward with gradients gives both the logits (for the probabilities) and the CAM of the top class,
so explaining costs one backward pass, not a second forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM

CamMethod = Literal["gradcam", "gradcam++", "hirescam"]

CAM_METHODS: dict[str, type[GradCAM]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
}


@dataclass(frozen=True, slots=True)
class CamOutput:
    """Logits ``(N, C)`` (float32) and min-max scaled maps ``(N, S, S)`` in ``[0, 1]`` at the input size."""

    logits: torch.Tensor
    maps: np.ndarray


def logits_and_cams(
    model: torch.nn.Module, x: torch.Tensor, layer: str, method: CamMethod = "gradcam"
) -> CamOutput:
    """Classify a normalised batch ``x`` ``(N, C_in, S, S)`` and explain each image's top class.

    Args:
        layer: dotted path of the target feature map (the registry's ``cam_layer``).
        method: ``gradcam`` (default), ``gradcam++`` or ``hirescam``.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; known: {', '.join(CAM_METHODS)}")
    model.eval()
    with CAM_METHODS[method](model=model, target_layers=[model.get_submodule(layer)]) as cam:
        maps = cam(input_tensor=x, targets=None)  # None: the top class of each image
        logits = cam.outputs.detach().float().cpu()
    return CamOutput(logits=logits, maps=np.asarray(maps, dtype=np.float32))


def energy_inside(heatmap: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the heatmap's total mass inside ``mask`` (both ``(S, S)``, same grid); None if all zero."""
    total = float(heatmap.sum())
    return None if total <= 0 else float(heatmap[mask].sum() / total)
