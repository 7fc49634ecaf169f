"""COCO instance annotations (as exported by CVAT, Supervisely and most labeling tools).

Layouts (the folder this adapter reads)::

    annotations/instances_<subset>.json + images/<subset>/<file_name>   CVAT "COCO 1.0", Datumaro
    annotations/instances_<subset>.json + images/<file_name>            (older CVAT: one images/)
    annotations.json + images/<file_name>                               common single-file export

Every ``annotations/instances_*.json`` is read (CVAT names its default subset ``default``);
:func:`load_coco` reads one JSON against any image folder. Only the ``images``, ``categories``
and ``annotations`` lists are used.

Samples: one per ``images`` entry, including images without annotations (negatives).
``findings`` is the sorted distinct category names of the image's annotations, or
``("no finding",)``. ``patient_id`` is ``"coco:" + str(image["patient_id"])`` when the image
record has that (non-standard) key, else ``"coco:" + file stem``: then every image is its own
patient, so add the key where several images show one person. ``boxes`` holds every annotation's
``bbox`` converted from COCO ``[x, y, width, height]`` to ``(x, y, x + width, y + height)``
(pixel-corner coordinates, see :mod:`chestlens.data.annotations`). ``masks`` is an
:class:`~chestlens.data.annotations.InstanceMasks` with one layer per category name.

Segmentation: polygons (lists of ``x, y`` in pixel-corner coordinates, rasterised by
``pycocotools.mask``: ``[1,1, 3,1, 3,3, 1,3]`` covers rows 1-2, columns 1-2; several polygons of
one annotation are united), uncompressed RLE (``{"size": [h, w], "counts": [ints]}``,
``iscrowd=1``) and compressed RLE (``counts`` a string, COCO's encoding); RLE counts are checked
when loading (they must cover exactly ``h * w`` pixels). An empty or missing ``segmentation``
makes a box-only instance (see :meth:`~chestlens.data.annotations.InstanceMasks.load`). A missing
``bbox`` is computed from the segmentation. Category names map to class names verbatim; two
categories with one name are one class.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from chestlens.data.annotations import Box, Instance, InstanceMasks, mask_box
from chestlens.data.formats._common import relative_posix
from chestlens.data.records import Modality, Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.errors import ChestlensInputError

SOURCE = "coco"
FOLDER = "coco"
NO_FINDING = "no finding"
_PEEK_BYTES = 65536

# (label, segmentation as in the JSON or None, box) of one annotation.
_Entry = tuple[str, Any, Box]


def annotation_files(folder: Path) -> list[tuple[Path, Path]]:
    """``(annotation JSON, image folder)`` pairs of a COCO folder (module docstring), or ``[]``."""
    images = folder / "images"
    if not images.is_dir():
        return []
    found = []
    for path in sorted((folder / "annotations").glob("instances_*.json")):
        subset = images / path.stem.removeprefix("instances_")
        found.append((path, subset if subset.is_dir() else images))
    if (folder / "annotations.json").is_file():
        found.append((folder / "annotations.json", images))
    return found


def detect(folder: Path) -> bool:
    """True when ``folder`` has ``images/`` and an annotation JSON naming COCO's lists early on."""
    return any(_peek_is_coco(path) for path, _ in annotation_files(folder))


def load(folder: Path) -> list[Sample]:
    """Every image of every annotation JSON in ``folder`` (see :func:`load_coco`)."""
    files = annotation_files(folder)
    if not files:
        raise ChestlensInputError(
            folder, "no images/ folder with annotations/instances_*.json or annotations.json"
        )
    return [sample for path, images in files for sample in load_coco(path, images, root=folder)]


def load_coco(
    json_path: Path, image_dir: Path, *, root: Path | None = None, modality: Modality = "xray"
) -> list[Sample]:
    """Read one COCO instance JSON whose ``file_name`` values are relative to ``image_dir``.

    Args:
        json_path: the annotation file.
        image_dir: folder the images' ``file_name`` values are relative to.
        root: folder the sample uids are relative to (``coco/<path below root>``); must contain
            ``image_dir``; default ``image_dir``.
        modality: ``"xray"``, or ``"ct"`` for annotated CT slices.

    Raises:
        ChestlensInputError: unreadable JSON, a malformed entry, a missing image file, an
            annotation naming an unknown image or category (naming the file and the entry).
    """
    data = _read_json(json_path)
    categories = _categories(json_path, data)
    images = _images(json_path, data, image_dir)
    per_image = _annotations(json_path, data, images, categories)
    classes = tuple(dict.fromkeys(categories.values()))
    root = image_dir if root is None else root
    samples = []
    for image_id, (record, path) in images.items():
        entries = tuple(per_image[image_id])
        shape = (record["height"], record["width"])
        patient = record.get("patient_id")
        patient = str(patient) if patient not in (None, "") else Path(record["file_name"]).stem
        samples.append(
            Sample(
                source=SOURCE,
                uid=f"{SOURCE}/{relative_posix(path, root)}",
                path=path,
                patient_id=f"{SOURCE}:{patient}",
                findings=tuple(sorted({label for label, _, _ in entries})) or (NO_FINDING,),
                modality=modality,
                masks=InstanceMasks(classes, shape, partial(decode_instances, entries, shape)),
                boxes=tuple((*box, label) for label, _, box in entries),
                extra={
                    "image_id": str(image_id),
                    "annotation_file": json_path.name,
                    "instances": str(len(entries)),
                },
            )
        )
    return samples


def decode_instances(entries: Sequence[_Entry], shape: tuple[int, int]) -> list[Instance]:
    """Decode validated annotation entries of one image into :class:`Instance` objects."""
    instances = []
    for label, segmentation, box in entries:
        mask = None if segmentation is None else decode_segmentation(segmentation, shape)
        instances.append(Instance(label=label, mask=mask, box=box))
    return instances


def rle_string_counts(counts: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string; ValueError if it is malformed.

    A port of ``rleFrString`` from the COCO API (``maskApi.c``): 5 bits per character offset by
    48, a continuation bit 0x20, sign bit 0x10 on the last character, and counts from the fourth
    on stored as the difference to the count two places before.
    """
    values: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts) or not 0 <= (char := ord(counts[position]) - 48) < 64:
                raise ValueError("malformed compressed RLE string")
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position, shift = position + 1, shift + 5
            if not more and char & 0x10:
                value |= -1 << shift
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


def decode_segmentation(segmentation: Any, shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``(rows, cols)`` mask of a validated COCO segmentation (polygons or RLE).

    Polygons are rasterised and united by ``pycocotools.mask``; the runs are expanded with numpy
    (column-major, zeros first), which also avoids pycocotools' ``decode`` warning under numpy 2.
    """
    rows, cols = shape
    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, rows, cols))
        counts = rle_string_counts(rle["counts"].decode("ascii"))
    elif isinstance(segmentation["counts"], str):
        counts = rle_string_counts(segmentation["counts"])
    else:
        counts = segmentation["counts"]
    runs = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    return np.ascontiguousarray(runs.reshape(cols, rows).T)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChestlensInputError(path, "annotation file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChestlensInputError(path, f"not a readable JSON file: {exc}") from None
    if not isinstance(data, dict):
        raise ChestlensInputError(path, "expected a JSON object with images, categories and annotations")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise ChestlensInputError(path, f"no {key!r} list: not a COCO instance annotation file")
    if not isinstance(data.get("annotations", []), list):
        raise ChestlensInputError(path, "'annotations' is not a list")
    return data


def _categories(path: Path, data: dict) -> dict[int, str]:
    names: dict[int, str] = {}
    for index, category in enumerate(data["categories"]):
        where = f"categories[{index}]"
        if not isinstance(category, dict) or not _is_int(category.get("id")):
            raise ChestlensInputError(path, f"{where}: needs an integer 'id'")
        name = category.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ChestlensInputError(path, f"{where} (id {category['id']}): needs a non-empty 'name'")
        if category["id"] in names:
            raise ChestlensInputError(path, f"{where}: duplicate category id {category['id']}")
        names[category["id"]] = name.strip()
    return names


def _images(path: Path, data: dict, image_dir: Path) -> dict[int, tuple[dict, Path]]:
    images: dict[int, tuple[dict, Path]] = {}
    seen: dict[str, int] = {}
    for index, record in enumerate(data["images"]):
        where = f"images[{index}]"
        if not isinstance(record, dict) or not _is_int(record.get("id")):
            raise ChestlensInputError(path, f"{where}: needs an integer 'id'")
        where = f"{where} (id {record['id']})"
        name = record.get("file_name")
        if (
            not isinstance(name, str)
            or not name
            or PurePosixPath(name).is_absolute()
            or ".." in name.split("/")
        ):
            raise ChestlensInputError(
                path, f"{where}: 'file_name' must be a path relative to the images folder"
            )
        if not all(_is_int(record.get(key)) and record[key] > 0 for key in ("width", "height")):
            raise ChestlensInputError(path, f"{where}: needs positive integer 'width' and 'height'")
        if record["id"] in images:
            raise ChestlensInputError(path, f"{where}: duplicate image id")
        if name in seen:
            raise ChestlensInputError(path, f"{where}: file_name {name!r} also used by images[{seen[name]}]")
        image = image_dir / name
        if not image.is_file():
            raise ChestlensInputError(path, f"{where}: image {name!r} not found in {image_dir}")
        seen[name] = index
        images[record["id"]] = (record, image)
    return images


def _annotations(
    path: Path, data: dict, images: dict[int, tuple[dict, Path]], categories: dict[int, str]
) -> dict[int, list[_Entry]]:
    per_image: dict[int, list[_Entry]] = {image_id: [] for image_id in images}
    for index, annotation in enumerate(data.get("annotations", [])):
        where = f"annotations[{index}]"
        if not isinstance(annotation, dict):
            raise ChestlensInputError(path, f"{where}: not an object")
        if "id" in annotation:
            where = f"{where} (id {annotation['id']})"
        image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
        if not _is_int(image_id) or image_id not in images:
            raise ChestlensInputError(path, f"{where}: image_id {image_id!r} is not in 'images'")
        if not _is_int(category_id) or category_id not in categories:
            raise ChestlensInputError(path, f"{where}: category_id {category_id!r} is not in 'categories'")
        record = images[image_id][0]
        shape = (record["height"], record["width"])
        try:
            segmentation = _checked_segmentation(annotation.get("segmentation"), shape)
            box = _box(annotation.get("bbox"), segmentation, shape)
        except ValueError as exc:
            raise ChestlensInputError(path, f"{where}: {exc}") from None
        per_image[image_id].append((categories[category_id], segmentation, box))
    return per_image


def _checked_segmentation(segmentation: Any, shape: tuple[int, int]) -> Any:
    """The segmentation if well-formed (None when empty), else ValueError with the reason."""
    if segmentation in (None, [], {}):
        return None
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                raise ValueError("each polygon must be a list of at least 3 x, y pairs")
            if not all(_is_number(v) for v in polygon):
                raise ValueError("polygon coordinates must be finite numbers")
        return segmentation
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        raise ValueError("segmentation must be a list of polygons or an RLE object")
    if segmentation.get("size") != list(shape):
        raise ValueError(
            f"RLE size {segmentation.get('size')} is not the image's [height, width] {list(shape)}"
        )
    counts = segmentation["counts"]
    if isinstance(counts, str):
        values = rle_string_counts(counts)
    elif isinstance(counts, list) and all(_is_int(v) for v in counts):
        values = counts
    else:
        raise ValueError("RLE counts must be a string or a list of integers")
    if any(v < 0 for v in values) or sum(values) != shape[0] * shape[1]:
        raise ValueError(f"RLE counts must be non-negative and cover {shape[0]} x {shape[1]} pixels")
    return segmentation


def _box(bbox: Any, segmentation: Any, shape: tuple[int, int]) -> Box:
    if bbox is None and segmentation is not None and (mask := decode_segmentation(segmentation, shape)).any():
        x0, y0, x1, y1 = mask_box(mask)
        bbox = [x0, y0, x1 - x0, y1 - y0]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise ValueError("needs 'bbox' as [x, y, width, height]")
    x, y, width, height = (float(v) for v in bbox)
    if width < 0 or height < 0:
        raise ValueError(f"bbox {bbox} has a negative size")
    return x, y, x + width, y + height


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _peek_is_coco(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(_PEEK_BYTES)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and any(key in head for key in (b'"images"', b'"categories"'))


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="COCO instance JSON (CVAT/Supervisely export): polygons, RLE masks, boxes",
        detect=detect,
        load=load,
    )
)
