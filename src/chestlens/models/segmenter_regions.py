"""Regions from a semantic lesion segmenter, for the regional slice classifier without a detector.

COVID-CT-Mask-Net reads a Mask R-CNN's ranked regions; a detector that finds lesions needs GPU training
(the CPU-trained one reached mask AP@0.5 0.036). The semantic segmenter (``lesions-ct-segmenter``)
already yields lesion instances: the connected components of each class of its argmax map. Here each
component becomes one region in the form :class:`~chestlens.models.regional.RegionalClassifier` reads:

* box: the component's bounding box in pixels of the segmenter grid (pixel corners, ``x1``/``y1``
  exclusive), normalised by :func:`~chestlens.models.regional.region_inputs`;
* score: the mean probability of the component's class over its pixels, in ``[0, 1]``;
* label: the class, ``1..C-1`` (the segmenter's channel, background 0 excluded);
* features, ``C + 5`` numbers (:func:`region_feature_dim`): the mean softmax probability of every channel
  (background first) over the component, then :data:`REGION_STATS`: the largest probability of its class
  in it, its area as a fraction of the grid, the share of its box it fills, and the mean and SD of the
  grey image the segmenter read (``[0, 1]`` after the CT window) over it.

Components under :data:`MIN_REGION_PIXELS` grid pixels are left out (isolated argmax pixels). Pixels
connect through edges and corners (8-connectivity).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from chestlens.models.inference import predict_logits
from chestlens.models.regional import RegionalClassifier, RegionInputs, region_inputs
from chestlens.preprocess.spec import PreprocessSpec

#: Components smaller than this many pixels of the segmenter grid are not regions.
MIN_REGION_PIXELS = 4
#: The per-region numbers after the mean channel probabilities (see the module docstring).
REGION_STATS = ("max_probability", "area_fraction", "box_fill", "intensity_mean", "intensity_sd")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def region_feature_dim(channels: int) -> int:
    """``D`` of a region's features for a segmenter with ``channels`` softmax channels (background too)."""
    return channels + len(REGION_STATS)


def segmentation_regions(
    probabilities: np.ndarray, unit: np.ndarray, *, min_pixels: int = MIN_REGION_PIXELS
) -> dict[str, torch.Tensor]:
    """The lesion components of one image as detector-style regions.

    Args:
        probabilities: ``(C, S, S)`` softmax probabilities of a multiclass segmenter (channel 0 background).
        unit: ``(S, S)`` the grey image in ``[0, 1]`` the segmenter read, on the same grid.
        min_pixels: smallest component kept, in grid pixels.

    Returns:
        ``boxes`` ``(N, 4)`` float32 pixels ``(x0, y0, x1, y1)``, ``scores`` ``(N,)``, ``labels`` ``(N,)``
        int64 in ``1..C-1`` and ``features`` ``(N, C + 5)`` float32, in class then component order.
    """
    channels, height, width = probabilities.shape
    if unit.shape != (height, width):
        raise ValueError(f"image {unit.shape} and probabilities {probabilities.shape[1:]} differ in size")
    label_map = probabilities.argmax(0)
    boxes, scores, labels, features = [], [], [], []
    for label in range(1, channels):
        components, count = ndimage.label(label_map == label, structure=_EIGHT_CONNECTED)
        if not count:
            continue
        index = np.arange(1, count + 1)
        pixels = np.bincount(components.ravel(), minlength=count + 1)[1:]
        keep = pixels >= min_pixels
        if not keep.any():
            continue
        index, pixels = index[keep], pixels[keep]
        slices = [s for i, s in enumerate(ndimage.find_objects(components)) if keep[i]]
        mean_probability = np.stack(
            [ndimage.mean(probabilities[c], components, index) for c in range(channels)], axis=1
        )
        intensity = ndimage.mean(unit, components, index)
        spread = np.sqrt(np.maximum(ndimage.mean(unit**2, components, index) - intensity**2, 0.0))
        box = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.float64)
        box_area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
        stats = np.stack(
            [
                ndimage.maximum(probabilities[label], components, index),
                pixels / (height * width),
                pixels / box_area,
                intensity,
                spread,
            ],
            axis=1,
        )
        boxes.append(box)
        scores.append(mean_probability[:, label])
        labels.append(np.full(len(index), label))
        features.append(np.concatenate([mean_probability, stats], axis=1))
    if not boxes:
        return {
            "boxes": torch.zeros(0, 4),
            "scores": torch.zeros(0),
            "labels": torch.zeros(0, dtype=torch.int64),
            "features": torch.zeros(0, region_feature_dim(channels)),
        }
    return {
        "boxes": torch.from_numpy(np.concatenate(boxes)).float(),
        "scores": torch.from_numpy(np.concatenate(scores)).float(),
        "labels": torch.from_numpy(np.concatenate(labels)).long(),
        "features": torch.from_numpy(np.concatenate(features)).float(),
    }


class SegmenterRegionalModel(nn.Module):
    """A ``kind="regional"`` bundle's network over a frozen semantic segmenter instead of a detector.

    ``forward(images)`` takes unit images ``(N, 1, S, S)`` in ``[0, 1]`` (CT windowed by the bundle's
    ``PreprocessSpec``, which is the segmenter's, stretched to its ``input_size``) and returns ``(N, 2)``
    logits: the segmenter's probabilities (normalised and test-time augmented per ``preprocess``, as the
    segmenter's own bundle runs), its components as regions (:func:`segmentation_regions`, the largest
    ``k`` by score), read by the :class:`~chestlens.models.regional.RegionalClassifier`.
    """

    def __init__(self, segmenter: nn.Module, head: RegionalClassifier, preprocess: PreprocessSpec) -> None:
        super().__init__()
        self.segmenter, self.head, self.preprocess = segmenter, head, preprocess
        self.feature_dim = region_feature_dim(head.num_region_classes + 1)

    @torch.no_grad()
    def regions(self, images: torch.Tensor) -> RegionInputs:
        """The top regions of ``(N, 1, S, S)`` unit images."""
        self.segmenter.eval()
        probabilities = predict_logits(self.segmenter, images, self.preprocess, batch_size=8).softmax(1)
        size = probabilities.shape[-2:]
        grid = nn.functional.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)
        detections = [
            segmentation_regions(p.numpy(), g[0].numpy()) for p, g in zip(probabilities, grid, strict=True)
        ]
        return region_inputs(
            detections, [tuple(size)] * len(images), k=self.head.k, feature_dim=self.feature_dim
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(*self.regions(images))
