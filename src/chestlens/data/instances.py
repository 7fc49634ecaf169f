"""Lesion instances from semantic masks, Mask R-CNN targets in torchvision's format, and back.

Segmentation sources (Inf-Net/MedSeg, V7, COVID-19 CT lesion masks) give one boolean layer per class
(:class:`~chestlens.data.records.Masks`); an instance detector needs objects. As COVID-CT-Mask-Net does
(``datasets/dataset_segmentation.py``: ``skimage.measure.label`` then ``regionprops`` per class), every
*connected component* of a class layer becomes one instance:

* connectivity is 8 (``scipy.ndimage.label`` with a 3x3 structure of ones, the same as
  ``skimage.measure.label``'s default in 2-D): pixels touching at a corner belong to one lesion;
* pixels in ``Masks.ignore`` are removed from every layer first (their annotation is unknown, so they
  belong to no instance);
* components with fewer than ``min_area_px`` pixels are dropped (COVID-CT-Mask-Net keeps ``area > 1``
  by default and ``area > 100`` with ``ignore_small``, which it trains with); the default of 10 px keeps
  95% of Inf-Net's GGO components and 99.7% of its consolidation components.

Coordinates follow :mod:`chestlens.data.annotations`: boxes ``(x0, y0, x1, y1)`` in pixel-corner
coordinates (a component covering columns 2..5 has ``x0 = 2, x1 = 6``), which is also what torchvision
detection models take (floats in ``[0, W] x [0, H]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from chestlens.data.annotations import Instance, mask_box
from chestlens.data.records import Masks
from chestlens.errors import ChestlensInputError
from chestlens.preprocess.labels import IGNORE_INDEX

#: 8-connectivity in 2-D (scipy's default structure is 4-connected).
CONNECTIVITY_8 = np.ones((3, 3), dtype=bool)
DEFAULT_MIN_AREA_PX = 10

DetectionTarget = dict[str, torch.Tensor]


def instances_from_masks(
    masks: Masks, classes: Sequence[str], *, min_area_px: int = DEFAULT_MIN_AREA_PX
) -> list[Instance]:
    """Connected components of each class layer as instances (module docstring for the rules).

    Args:
        masks: one image's masks; every name in ``classes`` must be a 2-D ``(rows, cols)`` layer.
        classes: the detector's classes, e.g. ``("ggo", "consolidation")``; other layers are ignored.
        min_area_px: smallest component kept, in pixels (after removing ignored pixels).

    Returns:
        Instances in class order, then in ``scipy.ndimage.label`` order (raster order of each component's
        first pixel); ``mask`` is a full-image boolean array, ``box`` its tight box, ``score`` None.

    Raises:
        ChestlensInputError: a class without a layer, or a layer that is not 2-D.
    """
    instances = []
    for name in classes:
        if name not in masks.layers:
            raise ChestlensInputError(None, f"masks have no {name!r} layer (layers: {sorted(masks.layers)})")
        layer = np.asarray(masks.layers[name], dtype=bool)
        if layer.ndim != 2:
            raise ChestlensInputError(
                None, f"layer {name!r} has shape {layer.shape}; instances need 2-D masks"
            )
        if masks.ignore is not None:
            layer = layer & ~np.asarray(masks.ignore, dtype=bool)
        components, count = ndimage.label(layer, structure=CONNECTIVITY_8)
        areas = np.bincount(components.ravel(), minlength=count + 1)
        for index in np.flatnonzero(areas[1:] >= min_area_px) + 1:
            component = components == index
            instances.append(Instance(label=name, mask=component, box=mask_box(component)))
    return instances


def detection_target(
    instances: Sequence[Instance], classes: Sequence[str], *, shape: tuple[int, int]
) -> DetectionTarget:
    """torchvision Mask R-CNN training target of one image.

    Args:
        instances: the image's instances, each with a ``(rows, cols)`` mask (box-only instances cannot
            train a mask head and are refused).
        classes: the detector's classes without background; ``classes[i]`` gets label ``i + 1``.
        shape: ``(rows, cols)`` of the image, so that an image without instances still gets masks of the
            right size.

    Returns:
        ``{"boxes": float32 (N, 4) xyxy pixel-corner, "labels": int64 (N,) in 1..C, "masks": uint8
        (N, rows, cols)}``; N = 0 gives ``(0, 4)``, ``(0,)`` and ``(0, rows, cols)``.

    Raises:
        ChestlensInputError: a label not in ``classes``, a missing mask or one of another shape.
    """
    label_ids = {name: index for index, name in enumerate(classes, start=1)}
    rows, cols = shape
    masks = np.zeros((len(instances), rows, cols), dtype=np.uint8)
    labels, boxes = [], []
    for i, instance in enumerate(instances):
        if instance.label not in label_ids:
            raise ChestlensInputError(
                None, f"instance label {instance.label!r} is not one of {list(classes)}"
            )
        if instance.mask is None or instance.mask.shape != (rows, cols):
            got = None if instance.mask is None else instance.mask.shape
            raise ChestlensInputError(
                None, f"instance of {instance.label!r} has mask shape {got}, not {shape}"
            )
        masks[i] = instance.mask
        labels.append(label_ids[instance.label])
        boxes.append(instance.box)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": torch.from_numpy(masks),
    }


def instances_from_detections(
    detection: Mapping[str, torch.Tensor], classes: Sequence[str], *, mask_threshold: float = 0.5
) -> list[Instance]:
    """One image's torchvision Mask R-CNN output as predicted instances (for evaluation and export).

    Args:
        detection: ``boxes`` (N, 4) xyxy pixel-corner, ``labels`` (N,) in ``1..C``, ``scores`` (N,) and
            optionally ``masks`` (N, 1, H, W) probabilities, as the model returns them in eval mode.
        classes: the detector's classes without background (label ``i`` is ``classes[i - 1]``).
        mask_threshold: a pixel belongs to the instance where its probability is above this (torchvision's
            COCO evaluation uses ``> 0.5``).

    Returns:
        Instances in the model's order, ``box`` the predicted box (not the mask's tight box), ``score`` set,
        ``mask`` a boolean ``(H, W)`` array (possibly empty) or None without ``masks``.
    """
    masks = detection.get("masks")
    boxes = detection["boxes"].tolist()
    labels = detection["labels"].tolist()
    scores = detection["scores"].tolist()
    binary = None if masks is None else (masks[:, 0] > mask_threshold).cpu().numpy()
    return [
        Instance(
            label=classes[label - 1],
            mask=None if binary is None else binary[i],
            box=tuple(boxes[i]),
            score=float(scores[i]),
        )
        for i, label in enumerate(labels)
    ]


def collate_detection(
    batch: Sequence[tuple[torch.Tensor, DetectionTarget]],
) -> tuple[list[torch.Tensor], list[DetectionTarget]]:
    """DataLoader ``collate_fn`` for detection: images differ in size, so both stay lists.

    Args:
        batch: ``(image (C, H, W) float, target)`` pairs as a dataset yields them.

    Returns:
        ``(images, targets)``: the two lists torchvision detection models take in training mode.
    """
    return [image for image, _ in batch], [target for _, target in batch]


def label_map_instances(label_map: np.ndarray, classes: Sequence[str], min_area_px: int) -> list[Instance]:
    """Instances of a ``(S, S)`` label map (``k`` = ``classes[k - 1]``, :data:`IGNORE_INDEX` unknown): the
    connected components of each class (:func:`instances_from_masks`)."""
    masks = Masks(
        layers={name: label_map == k for k, name in enumerate(classes, start=1)},
        ignore=label_map == IGNORE_INDEX,
    )
    return instances_from_masks(masks, classes, min_area_px=min_area_px)
