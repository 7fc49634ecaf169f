"""Instances from labeling tools (COCO, Supervisely) and the COCO export of predictions.

Coordinates: ``x`` is the column, ``y`` the row, both in pixels of the image file. Boxes are
``(x0, y0, x1, y1)`` in pixel-corner coordinates, as COCO's ``bbox``: pixel ``(row, col)`` spans
``[col, col + 1) x [row, row + 1)``, so a mask covering columns 2..5 has ``x0 = 2, x1 = 6``.
Masks are boolean ``(rows, cols)`` arrays on the full image grid.

:class:`InstanceMasks` is the :class:`~chestlens.data.records.MaskSource` of both import adapters:
``load()`` gives one semantic layer per class (the union of that class's instance masks) for the
segmentation trainer, ``instances()`` the instances themselves for the Mask R-CNN trainer.

Export: :func:`export_coco` is the interchange format back to the labeling tools; CVAT and
Supervisely both import COCO instance JSON, so there is no Supervisely writer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from chestlens.atomic import write_text_atomic
from chestlens.data.records import Masks
from chestlens.errors import ChestlensInputError

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True, eq=False)
class Instance:
    """One annotated or predicted object.

    Attributes:
        label: class name (COCO category name, Supervisely class title).
        mask: boolean ``(rows, cols)`` array on the full image, or None for a box-only object
            (a COCO annotation with empty ``segmentation``, a Supervisely rectangle).
        box: ``(x0, y0, x1, y1)`` in pixel-corner coordinates (module docstring).
        score: model confidence for predictions; None for annotations.
    """

    label: str
    mask: np.ndarray | None
    box: Box
    score: float | None = None


def mask_box(mask: np.ndarray) -> Box:
    """Tight box of a non-empty mask in pixel-corner coordinates: columns 2..5 give ``x0=2, x1=6``."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


@dataclass(frozen=True, slots=True)
class InstanceMasks:
    """Lazy masks of one image from an instance annotation.

    Attributes:
        classes: every class of the dataset, in the annotation file's order; :meth:`load` gives
            each a layer (all False where the image has none), so negatives have empty layers.
        shape: ``(rows, cols)`` of the image.
        read: decodes the image's instances (a picklable ``functools.partial``).
    """

    classes: tuple[str, ...]
    shape: tuple[int, int]
    read: Callable[[], list[Instance]]

    def instances(self) -> list[Instance]:
        """The image's instances in file order, masks decoded."""
        return self.read()

    def load(self) -> Masks:
        """One layer per class, the union of its instance masks.

        ``ignore`` is the union of the boxes of box-only instances, every pixel a box overlaps
        (which of them belong to the object is unknown; the region is ignored for all classes), or
        None when every instance has a mask.
        """
        layers = {name: np.zeros(self.shape, dtype=bool) for name in self.classes}
        ignore = None
        for instance in self.instances():
            if instance.mask is not None:
                layers[instance.label] |= instance.mask
                continue
            if ignore is None:
                ignore = np.zeros(self.shape, dtype=bool)
            x0, y0, x1, y1 = instance.box
            top, left = max(math.floor(y0), 0), max(math.floor(x0), 0)
            ignore[top : max(math.ceil(y1), top), left : max(math.ceil(x1), left)] = True
        return Masks(layers=layers, ignore=ignore)


@dataclass(frozen=True, slots=True)
class ImagePrediction:
    """A model's instances for one image, for :func:`export_coco`.

    Attributes:
        file_name: the image's ``file_name`` in the COCO JSON (relative to the images folder).
        width, height: image size in pixels; instance masks must be ``(height, width)``.
        instances: the predicted instances (``score`` set; None is written as 1.0 in the results
            list, as for ground truth).
    """

    file_name: str
    width: int
    height: int
    instances: Sequence[Instance]


def results_path(out_json: Path) -> Path:
    """Where :func:`export_coco` writes the results list: ``<stem>_results.json`` beside ``out_json``."""
    return out_json.with_name(f"{out_json.stem}_results.json")


def export_coco(
    predictions: Sequence[ImagePrediction], out_json: Path, *, categories: Sequence[str]
) -> tuple[Path, Path]:
    """Write predictions as a COCO instance dataset and as a COCO results list, atomically.

    ``out_json`` gets a full dataset (``images``, ``categories``, ``annotations``) that CVAT and
    Supervisely import and :func:`chestlens.data.formats.coco.load_coco` reads back with identical
    masks and boxes; :func:`results_path` gets the results list (``image_id``, ``category_id``,
    ``bbox``, ``score``, ``segmentation``) that ``pycocotools`` ``COCO.loadRes`` evaluates against
    it. Image ids are 1..n in ``predictions`` order, category ids 1..k in ``categories`` order.
    Masks become compressed RLE (``counts`` a string), ``area`` is the mask's pixel count (the
    box area for box-only instances, whose ``segmentation`` is ``[]``); ``bbox`` is the
    instance's box as ``[x0, y0, x1 - x0, y1 - y0]``; ``score`` is kept where not None.

    Returns:
        ``(dataset path, results path)``.

    Raises:
        ChestlensInputError: a label not in ``categories``, a mask of the wrong shape, a bad box or
            score (named by image file name).
    """
    category_ids = {name: index for index, name in enumerate(categories, start=1)}
    if len(category_ids) != len(categories):
        raise ChestlensInputError(out_json, f"duplicate category names in {list(categories)}")
    names = [prediction.file_name for prediction in predictions]
    if len(set(names)) != len(names):
        raise ChestlensInputError(out_json, "two predictions share one file_name")
    images, annotations, results = [], [], []
    for image_id, prediction in enumerate(predictions, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": prediction.file_name,
                "width": int(prediction.width),
                "height": int(prediction.height),
            }
        )
        for instance in prediction.instances:
            entry = coco_annotation(instance, prediction, category_ids)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **entry, "iscrowd": 0})
            result = {"image_id": image_id, **entry}
            result["score"] = entry.get("score", 1.0)
            if not result["segmentation"]:
                del result["segmentation"]
            results.append(result)
    dataset = {
        "images": images,
        "categories": [{"id": i, "name": name, "supercategory": ""} for name, i in category_ids.items()],
        "annotations": annotations,
    }
    write_text_atomic(out_json, json.dumps(dataset, allow_nan=False))
    write_text_atomic(results_path(out_json), json.dumps(results, allow_nan=False))
    return out_json, results_path(out_json)


def coco_annotation(instance: Instance, prediction: ImagePrediction, category_ids: dict[str, int]) -> dict:
    where = prediction.file_name
    if instance.label not in category_ids:
        raise ChestlensInputError(where, f"label {instance.label!r} is not one of the categories")
    box = [float(v) for v in instance.box]
    if not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
        raise ChestlensInputError(where, f"bad box {instance.box} for {instance.label!r}")
    if instance.score is not None and not math.isfinite(instance.score):
        raise ChestlensInputError(where, f"score {instance.score} of {instance.label!r} is not finite")
    bbox = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
    entry: dict = {"category_id": category_ids[instance.label], "bbox": bbox}
    if instance.mask is None:
        entry.update(segmentation=[], area=bbox[2] * bbox[3])
    else:
        if instance.mask.shape != (prediction.height, prediction.width):
            raise ChestlensInputError(
                where,
                f"mask shape {instance.mask.shape} is not (height, width) = "
                f"{(prediction.height, prediction.width)}",
            )
        rle = coco_mask.encode(np.asfortranarray(np.asarray(instance.mask, dtype=bool), dtype=np.uint8))
        entry.update(
            segmentation={"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            area=float(coco_mask.area(rle)),
        )
    if instance.score is not None:
        entry["score"] = float(instance.score)
    return entry
