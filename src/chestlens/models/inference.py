"""Batched forward passes over preprocessed ``[0, 1]`` image tensors."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from chestlens.data.transforms import normalise
from chestlens.models.bundle import PreprocessSpec


@torch.no_grad()
def iter_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    spec: PreprocessSpec,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> Iterator[torch.Tensor]:
    """Logits (float32, CPU) of consecutive batches of grey ``[0, 1]`` images ``(N, 1, H, W)``, in order:
    ``(b, C)`` for a classifier, ``(b, C, S, S)`` for a segmenter.

    Images are resized and normalised per ``spec`` (a no-op resize when already at the input size).
    """
    model.eval()
    for start in range(0, images.shape[0], batch_size):
        x = normalise(images[start : start + batch_size].float(), spec).to(device)
        yield model(x.contiguous(memory_format=torch.channels_last)).float().cpu()


def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    spec: PreprocessSpec,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Logits ``(N, C)`` (float32, CPU) of grey ``[0, 1]`` images ``(N, 1, H, W)``: :func:`iter_logits`."""
    outputs = list(iter_logits(model, images, spec, batch_size=batch_size, device=device))
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs)
