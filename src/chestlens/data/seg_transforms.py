"""Segmentation targets and mask-synchronised augmentation (torchvision transforms v2).

Targets are ``uint8`` label maps on the image grid: binary 0/1, multiclass ``0`` background and ``k`` for
the k-th class, and :data:`IGNORE_INDEX` (255) where the annotation is unknown (``Masks.ignore``) or where
augmentation padded the image (outside the rotated frame): such pixels carry no information, so they
are excluded from losses and metrics like annotated ignore pixels.

A sample is a dict that torchvision v2 transforms move together::

    {"image": tv_tensors.Image (1, H, W) float32 grey in [0, 1] (``to_unit_range`` output, before
              ``normalise``),
     "mask": tv_tensors.Mask (H, W) uint8 label map,
     "boxes": tv_tensors.BoundingBoxes (K, 4) XYXY pixels (optional), "labels": (K,) int64 (with boxes)}

Geometric steps act on all of them (image bilinear with antialiasing, mask nearest, boxes as
coordinates); brightness/contrast act on the image only. Masks are resized with centre-aligned nearest
neighbour (``NEAREST_EXACT``): torchvision's default for masks (``NEAREST``, source pixel
``floor(i * scale)``) would shift a downsized mask by up to half an output pixel against the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from chestlens.errors import ChestlensInputError
from chestlens.preprocess.labels import IGNORE_INDEX

#: Label value of pixels that are not scored (unknown annotation, or padding from augmentation).
#: Name of class 0 of a multiclass label map.
Sample = dict[str, torch.Tensor]


def make_sample(
    image: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    boxes: Sequence[Sequence[float]] | None = None,
    box_labels: Sequence[int] | None = None,
) -> Sample:
    """Wrap a grey ``[0, 1]`` image ``(H, W)`` or ``(1, H, W)`` and its label map ``(H, W)`` as a v2 sample.

    ``boxes`` are ``(x0, y0, x1, y1)`` in pixels with ``box_labels`` (default 0 each).
    """
    pixels = torch.as_tensor(np.asarray(image), dtype=torch.float32)
    pixels = pixels[None] if pixels.dim() == 2 else pixels
    if pixels.shape[-2:] != tuple(np.shape(target)):
        raise ChestlensInputError(
            None, f"image {tuple(pixels.shape)} and target {np.shape(target)} differ in size"
        )
    sample: Sample = {
        "image": tv_tensors.Image(pixels),
        "mask": tv_tensors.Mask(torch.as_tensor(np.asarray(target), dtype=torch.uint8)),
    }
    if boxes is not None:
        coords = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        sample["boxes"] = tv_tensors.BoundingBoxes(
            coords, format="XYXY", canvas_size=tuple(pixels.shape[-2:])
        )
        labels = box_labels if box_labels is not None else [0] * len(coords)
        sample["labels"] = torch.as_tensor(labels, dtype=torch.int64)
    return sample


def _resize_mask(mask: tv_tensors.Mask, size: list[int]) -> tv_tensors.Mask:
    return TF.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST_EXACT)


def resize_label_map(target: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """A label map ``(H, W)`` at ``size`` x ``size`` (stretched like the image), centre-aligned nearest
    neighbour, so values (classes, :data:`IGNORE_INDEX`) are kept; ``uint8`` stays ``uint8``."""
    mask = tv_tensors.Mask(torch.as_tensor(np.asarray(target)))
    return _resize_mask(mask, [size, size]).as_subclass(torch.Tensor)


class _RandomResizedCrop(v2.RandomResizedCrop):
    """``RandomResizedCrop`` with centre-aligned nearest resizing of masks."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            box = (params["top"], params["left"], params["height"], params["width"])
            return _resize_mask(TF.crop(inpt, *box), self.size)
        return super().transform(inpt, params)


class _Resize(v2.Resize):
    """``Resize`` with centre-aligned nearest resizing of masks."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return _resize_mask(inpt, self.size)
        return super().transform(inpt, params)


def _gaussian_taps(sigma_px: float) -> torch.Tensor:
    """torchvision's Gaussian blur kernel for ``ElasticTransform``: ``int(8 sigma + 1)`` taps, made odd,
    normalised to sum 1; float32 ``(taps,)``."""
    taps = int(8 * sigma_px + 1)
    taps += taps % 2 == 0
    offsets = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    weights = torch.exp(-(offsets**2) / (2 * sigma_px**2))
    return (weights / weights.sum()).float()


def elastic_alpha(rms_px: float, sigma_px: float) -> float:
    """The ``alpha`` of :class:`torchvision.transforms.v2.ElasticTransform` whose displacement field has an
    RMS of ``rms_px`` pixels per axis away from the image border.

    torchvision draws uniform noise in ``[-1, 1]`` per pixel (variance 1/3), blurs it with its Gaussian
    kernel of SD ``sigma_px`` (:func:`_gaussian_taps`) and moves each pixel by ``alpha / 2`` times the
    blurred value; the blurred noise's variance is ``1/3`` times the sum of the squared 2-D kernel weights,
    so the RMS displacement is ``alpha / 2 * sqrt(that)``.
    """
    squared_1d = float((_gaussian_taps(sigma_px).double() ** 2).sum())
    return 2 * rms_px / math.sqrt(squared_1d**2 / 3)


class _SeparableElastic(v2.ElasticTransform):
    """``ElasticTransform`` whose noise is blurred by two 1-D passes of torchvision's kernel instead of one
    2-D convolution: the same field away from the border (edge-replicated instead of reflected there), at
    a cost linear in the kernel width (a 193-tap kernel at 352 px: about 100x less work)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        planes = [x for x in flat_inputs if isinstance(x, (tv_tensors.Image, tv_tensors.Mask))]
        height, width = TF.get_size(planes[0])
        fields = []
        for alpha, sigma, extent in zip(self.alpha, self.sigma, (width, height), strict=True):
            noise = torch.rand(1, 1, height, width) * 2 - 1
            fields.append(_separable_blur(noise, sigma) * alpha / extent)
        return {"displacement": torch.cat(fields, 1).permute(0, 2, 3, 1)}  # (1, H, W, 2)


def _separable_blur(plane: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Blur ``(1, 1, H, W)`` with :func:`_gaussian_taps` along rows, then columns (edges replicated)."""
    taps = _gaussian_taps(sigma_px)
    half = len(taps) // 2
    rows = F.conv2d(F.pad(plane, (half, half, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
    return F.conv2d(F.pad(rows, (0, 0, half, half), mode="replicate"), taps.view(1, 1, -1, 1))


def elastic_step(rms_px: float, sigma_px: float, p: float) -> v2.Transform:
    """Smooth random elastic deformation with probability ``p``: RMS displacement ``rms_px`` pixels per axis,
    displacement field smoothed with a Gaussian of SD ``sigma_px`` pixels; image bilinear, mask nearest,
    pixels pulled from outside the frame are 0 in the image and :data:`IGNORE_INDEX` in the mask."""
    deform = _SeparableElastic(
        alpha=elastic_alpha(rms_px, sigma_px),
        sigma=sigma_px,
        interpolation=v2.InterpolationMode.BILINEAR,
        fill={tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX},
    )
    return v2.RandomApply([deform], p=p)


def train_transform(
    size: int,
    *,
    scale: tuple[float, float] = (0.7, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    degrees: float = 15.0,
    brightness: float = 0.2,
    contrast: float = 0.2,
    hflip: bool = False,
    elastic: tuple[float, float, float] | None = None,
    with_boxes: bool = False,
) -> v2.Compose:
    """Training augmentation of a sample to ``size`` x ``size``.

    Steps: random resized crop (area fraction ``scale``, aspect ``ratio``) to the output size; rotation
    by a uniform angle in ``[-degrees, degrees]`` (image padded with 0, mask with :data:`IGNORE_INDEX`);
    optional elastic deformation ``elastic = (rms_px, sigma_px, p)`` on the output grid
    (:func:`elastic_step`); optional horizontal flip (off by default: it swaps left and right anatomy,
    and with it any ``lung_left``/``lung_right`` classes); brightness and contrast factors in
    ``[1 - b, 1 + b]`` on the image. ``with_boxes``: finally clamp boxes to the image and drop boxes
    (and their labels) smaller than 1 pixel.
    """
    steps: list[v2.Transform] = [
        _RandomResizedCrop((size, size), scale=scale, ratio=ratio, antialias=True),
        v2.RandomRotation(
            degrees,
            interpolation=v2.InterpolationMode.BILINEAR,
            fill={tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX},
        ),
    ]
    if elastic is not None:
        steps.append(elastic_step(*elastic))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ColorJitter(brightness=brightness, contrast=contrast))
    if with_boxes:
        steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)]
    return v2.Compose(steps)


def eval_transform(size: int) -> v2.Transform:
    """Validation/test: stretch to ``size`` x ``size``; the image exactly as
    :func:`chestlens.data.transforms.resize_unit` (bilinear, antialiased), the mask nearest."""
    return _Resize((size, size), antialias=True)
