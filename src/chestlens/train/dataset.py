"""Training view of cached images: torchvision v2 augmentation, then the bundle's normalisation.

Classification augments the image alone; segmentation moves the label map with it
(:func:`chestlens.data.seg_transforms.train_transform`). Both read the same :class:`AugmentConfig`.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from chestlens.data.seg_transforms import elastic_step, make_sample, train_transform
from chestlens.data.tensors import LabelledImages
from chestlens.data.transforms import normalise
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.train.config import AugmentConfig


def build_augmentation(cfg: AugmentConfig, size: int) -> v2.Compose:
    """Random resized crop, rotation, optional elastic deformation, brightness/contrast jitter, optional
    flip; ``(1, S, S)`` tensors."""
    steps: list[torch.nn.Module] = [
        v2.RandomResizedCrop(size, scale=cfg.scale, ratio=cfg.ratio, antialias=True),
        v2.RandomRotation(cfg.rotation_deg),
    ]
    elastic = cfg.elastic()
    if elastic is not None:
        steps.append(elastic_step(*elastic))
    steps.append(v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast))
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


class SegmentationDataset(torch.utils.data.Dataset):
    """Training view of :class:`LabelledImages`: mask-synchronised augmentation (crop, rotation with
    the ignore label outside the frame, optional elastic deformation and flip, brightness/contrast), then
    normalisation.

    Items ``(x, y)``: ``x`` float32 ``(in_chans, S, S)``, ``y`` int64 ``(S, S)`` label map.
    """

    def __init__(self, data: LabelledImages, spec: PreprocessSpec, cfg: AugmentConfig) -> None:
        self.data = data
        self.spec = spec
        self.augment = train_transform(
            spec.input_size,
            scale=cfg.scale,
            ratio=cfg.ratio,
            degrees=cfg.rotation_deg,
            brightness=cfg.brightness,
            contrast=cfg.contrast,
            hflip=cfg.hflip,
            elastic=cfg.elastic(),
        )

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.augment(make_sample(self.data.images[index], self.data.targets[index]))
        image = sample["image"].as_subclass(torch.Tensor).clamp(0.0, 1.0)
        return normalise(image, self.spec), sample["mask"].as_subclass(torch.Tensor).long()
