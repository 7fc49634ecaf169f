"""Decoded images with their segmentation label maps, cached at the network input size.

Images go through exactly the inference steps (:func:`chestlens.data.tensors.decode_images`: read,
CT window from the :class:`~chestlens.preprocess.spec.PreprocessSpec` for Hounsfield-unit input, stretch
resize, bilinear with antialiasing); pictures already in display range (radiographs, Inf-Net's JPEG CT
crops, ``pixel_unit == "unit"``) are not windowed. Label maps (:func:`chestlens.data.tasks.target_label_map`)
are stretched to the same grid with centre-aligned nearest neighbour, so classes and the ignore label
survive unchanged. Training, validation and evaluation all score on this ``S x S`` grid. A sample whose
source stores it turned (:func:`~chestlens.data.records.display_quarter_turns`) has image and label map
turned back to the radiological display together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from chestlens.data.records import Sample, display_quarter_turns
from chestlens.data.seg_transforms import resize_label_map
from chestlens.data.tasks import target_label_map
from chestlens.data.tensors import LabelledImages, decode_images
from chestlens.errors import ChestlensInputError
from chestlens.preprocess.spec import PreprocessSpec


def _label_map(sample: Sample, target: str, size: int) -> torch.Tensor:
    if sample.masks is None:
        raise ChestlensInputError(sample.path, f"{sample.uid} has no masks for target {target}")
    try:
        label_map = target_label_map(target, sample.masks.load())
    except ChestlensInputError as error:
        raise ChestlensInputError(sample.path, f"{sample.uid}: {error.reason}") from None
    return resize_label_map(label_map, size)


def segmented_images(
    items: Sequence[tuple[Sample, str, str]], target: str, spec: PreprocessSpec
) -> LabelledImages:
    """Decode ``(sample, split label, patient group)`` items and their ``target`` label maps into
    :class:`~chestlens.data.tensors.LabelledImages` with uint8 ``(N, S, S)`` targets (0 background,
    ``k`` the k-th class, :data:`~chestlens.preprocess.labels.IGNORE_INDEX` not scored)."""
    size = spec.input_size
    targets = [_label_map(sample, target, size) for sample, _, _ in items]
    images = decode_images([Path(sample.path) for sample, _, _ in items], spec)
    for index, (sample, _, _) in enumerate(items):
        turns = display_quarter_turns(sample)
        if turns:  # clockwise = negative k for rot90 over (rows, cols)
            images[index] = torch.rot90(images[index], -turns, dims=(-2, -1))
            targets[index] = torch.rot90(targets[index], -turns, dims=(-2, -1))
    return LabelledImages.of_items(
        items,
        images,
        torch.stack(targets) if targets else torch.empty(0, size, size, dtype=torch.uint8),
    )
