"""Batched forward passes over preprocessed ``[0, 1]`` image tensors."""

from __future__ import annotations

import torch

from chestlens.data.transforms import normalise
from chestlens.models.bundle import PreprocessSpec


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    spec: PreprocessSpec,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Logits ``(N, C)`` (float32, CPU) for grey ``[0, 1]`` images ``(N, 1, H, W)``.

    Images are resized and normalised per ``spec`` (a no-op resize when already at the input size).
    """
    model.eval()
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        x = normalise(images[start : start + batch_size].float(), spec).to(device)
        outputs.append(model(x.contiguous(memory_format=torch.channels_last)).float().cpu())
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs)
