"""Batched forward passes over preprocessed ``[0, 1]`` image tensors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from chestlens.data.tensors import LungMasker
from chestlens.data.transforms import normalise
from chestlens.models.spec import BundleSpec
from chestlens.models.tta import tta_logits
from chestlens.preprocess.spec import PreprocessSpec


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

    Images are resized and normalised per ``spec`` (a no-op resize when already at the input size); a
    segmenter's logits are averaged over ``spec.tta`` (:func:`chestlens.models.tta.tta_logits`).
    """
    model.eval()

    def network(x: torch.Tensor) -> torch.Tensor:
        return model(x.contiguous(memory_format=torch.channels_last))

    for start in range(0, images.shape[0], batch_size):
        x = normalise(images[start : start + batch_size].float(), spec).to(device)
        yield tta_logits(network, x, spec.tta).float().cpu()


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


def lung_masker(
    model: torch.nn.Module, spec: PreprocessSpec, *, batch_size: int = 32, device: torch.device | str = "cpu"
) -> LungMasker:
    """A :data:`chestlens.data.tensors.LungMasker` from a lung segmenter: bool masks ``(S, S)`` on its
    grid, probability >= 0.5 of the first channel, exactly as the screener thresholds them."""

    @torch.no_grad()
    def masks(units: Sequence[torch.Tensor]) -> list[np.ndarray]:
        model.eval()
        out = []
        for start in range(0, len(units), batch_size):
            x = torch.stack([normalise(u.float(), spec) for u in units[start : start + batch_size]])
            logits = model(x.to(device).contiguous(memory_format=torch.channels_last)).float().cpu()
            out.extend(m for m in (torch.sigmoid(logits[:, 0]) >= 0.5).numpy())
        return out

    return masks


def masker_for(spec: BundleSpec) -> LungMasker | None:
    """The lung masker a lung-field classifier needs (None for any other bundle): the lung segmenter
    its training used (``training.config.lungs``), else the bundled ``lungs-segmenter``."""
    from chestlens.models.bundle import load_bundle
    from chestlens.preprocess.lung_roi import needs_lungs

    if not needs_lungs(spec.preprocess):
        return None
    lungs = load_bundle(spec.training.config.get("lungs", "lungs-segmenter"))
    return lung_masker(lungs.build_model(), lungs.spec.preprocess)
