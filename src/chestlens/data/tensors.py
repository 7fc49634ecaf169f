"""Decoded, preprocessed image tensors with their labels, for training and evaluation.

Every image is decoded once (:func:`chestlens.io.read_image`), mapped to ``[0, 1]`` and resized to the
network input size with the exact inference resize of :func:`chestlens.data.transforms.resize_unit`, then
kept in memory as float32 ``(N, 1, S, S)``. Evaluation therefore sees precisely what ``chestlens predict``
feeds the network; training applies augmentation on top (:mod:`chestlens.train.dataset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chestlens.data.records import Sample
from chestlens.data.transforms import resize_unit, to_unit_range
from chestlens.models.bundle import PreprocessSpec
from chestlens.workers import MIN_ITEMS_FOR_POOL, process_pool


def _decode_resized(args: tuple[str, PreprocessSpec]) -> np.ndarray:
    from chestlens.io import read_image

    path, spec = args
    unit = torch.from_numpy(np.ascontiguousarray(to_unit_range(read_image(Path(path)), spec)))[None]
    return resize_unit(unit, spec.input_size).numpy()


def decode_images(paths: Sequence[Path], spec: PreprocessSpec, workers: int = 2) -> torch.Tensor:
    """Decode and resize images to a float32 tensor ``(N, 1, S, S)`` with values in ``[0, 1]``."""
    jobs = [(str(p), spec) for p in paths]
    if workers > 1 and len(jobs) >= MIN_ITEMS_FOR_POOL:
        with process_pool(workers) as pool:
            arrays = list(pool.map(_decode_resized, jobs, chunksize=8))
    else:
        arrays = [_decode_resized(job) for job in jobs]
    return (
        torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 1, spec.input_size, spec.input_size)
    )


@dataclass(frozen=True, slots=True)
class LabelledImages:
    """Cached images with their targets and grouping keys.

    Attributes:
        images: float32 ``(N, 1, S, S)`` in ``[0, 1]``.
        targets: int64 ``(N,)`` class indices (classification), or uint8 ``(N, S, S)`` label maps
            (segmentation, :func:`chestlens.data.seg_tensors.segmented_images`).
        patient_ids, sources, uids: length-N string sequences (for patient bootstrap and per-source reports).
    """

    images: torch.Tensor
    targets: torch.Tensor
    patient_ids: tuple[str, ...]
    sources: tuple[str, ...]
    uids: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    @classmethod
    def of_items(
        cls, items: Sequence[tuple[Sample, str, str]], images: torch.Tensor, targets: torch.Tensor
    ) -> LabelledImages:
        """Images and targets of ``(sample, label, patient group)`` items, keyed by the items.

        The group (linked patient id) is what the evaluation bootstraps over.
        """
        return cls(
            images=images,
            targets=targets,
            patient_ids=tuple(group for _, _, group in items),
            sources=tuple(sample.source for sample, _, _ in items),
            uids=tuple(sample.uid for sample, _, _ in items),
        )


def labelled_images(
    items: Sequence[tuple[Sample, str, str]], labels: Sequence[str], spec: PreprocessSpec
) -> LabelledImages:
    """Decode ``(sample, class label, patient group)`` items into :class:`LabelledImages`."""
    return LabelledImages.of_items(
        items,
        decode_images([Path(sample.path) for sample, _, _ in items], spec),
        torch.tensor([list(labels).index(label) for _, label, _ in items], dtype=torch.long),
    )
