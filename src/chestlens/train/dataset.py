"""Decoded, preprocessed image tensors for training and evaluation.

Every image is decoded once (:func:`chestlens.io.read_image`), mapped to ``[0, 1]`` and resized to the
network input size with the exact inference resize of :func:`chestlens.data.transforms.normalise`, then
kept in memory as float32 ``(N, 1, S, S)``. Evaluation therefore sees precisely what ``chestlens predict``
feeds the network; training applies augmentation on top of the cached tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from chestlens.data.transforms import normalise, resize_unit, to_unit_range
from chestlens.models.bundle import PreprocessSpec
from chestlens.train.config import AugmentConfig


def _decode_resized(args: tuple[str, PreprocessSpec]) -> np.ndarray:
    from chestlens.io import read_image

    path, spec = args
    unit = torch.from_numpy(np.ascontiguousarray(to_unit_range(read_image(Path(path)), spec)))[None]
    return resize_unit(unit, spec.input_size).numpy()


def decode_images(paths: Sequence[Path], spec: PreprocessSpec, workers: int = 2) -> torch.Tensor:
    """Decode and resize images to a float32 tensor ``(N, 1, S, S)`` with values in ``[0, 1]``."""
    jobs = [(str(p), spec) for p in paths]
    if workers > 1 and len(jobs) > 16:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            arrays = list(pool.map(_decode_resized, jobs, chunksize=8))
    else:
        arrays = [_decode_resized(job) for job in jobs]
    return (
        torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 1, spec.input_size, spec.input_size)
    )


@dataclass(frozen=True, slots=True)
class LabelledImages:
    """Cached images with their labels and grouping keys.

    Attributes:
        images: float32 ``(N, 1, S, S)`` in ``[0, 1]``.
        targets: int64 ``(N,)`` class indices.
        patient_ids, sources, uids: length-N string sequences (for patient bootstrap and per-source reports).
    """

    images: torch.Tensor
    targets: torch.Tensor
    patient_ids: tuple[str, ...]
    sources: tuple[str, ...]
    uids: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def build_augmentation(cfg: AugmentConfig, size: int) -> v2.Compose:
    """Random resized crop, rotation, brightness/contrast jitter, optional flip; ``(1, S, S)`` tensors."""
    steps: list[torch.nn.Module] = [
        v2.RandomResizedCrop(size, scale=cfg.scale, ratio=cfg.ratio, antialias=True),
        v2.RandomRotation(cfg.rotation_deg),
        v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast),
    ]
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


class AugmentedDataset(torch.utils.data.Dataset):
    """Training view of :class:`LabelledImages`: augmentation, then normalisation. Items ``(x, y)``."""

    def __init__(self, data: LabelledImages, spec: PreprocessSpec, augment: v2.Compose | None) -> None:
        self.data = data
        self.augment = augment
        self.spec = spec

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.data.images[index]
        if self.augment is not None:
            x = self.augment(x).clamp_(0.0, 1.0)
        return normalise(x, self.spec), self.data.targets[index]
