"""Supervisely projects (the "Supervisely JSON" download of an image project).

Layout (the folder this adapter reads)::

    meta.json                       {"classes": [{"title", "shape", "color"}, ...], "tags": [...]}
    <dataset>/img/<image name>      e.g. ds0/img/case1.png   (datasets may be nested folders)
    <dataset>/ann/<image name>.json e.g. ds0/ann/case1.png.json; older SDKs wrote ann/case1.json
    (img_info/, meta/ and other extra folders are ignored)

Each annotation JSON holds ``size: {height, width}``, image ``tags`` and ``objects``, each with
``classTitle``, ``geometryType`` (the class's ``shape`` in meta.json decides, as in the SDK;
``geometryType`` only for classes of shape ``any``) and:

* ``bitmap: {data, origin: [x, y]}``: ``data`` is base64 of a zlib-compressed PNG (plain base64
  PNG is accepted too, as the Supervisely SDK does) holding the mask cropped to the object; the
  object is the PNG's alpha channel where it has one (the SDK writes a 1-bit palette PNG with
  index 0 transparent), else its non-zero pixels. ``origin`` is the column and row of the PNG's
  top-left pixel in the image.
* ``points: {exterior, interior}`` for ``polygon``: ``[x, y]`` vertices on pixel centres
  (``x`` = column, ``y`` = row). The object is every pixel whose centre lies inside or on the
  exterior ring and not inside or on an interior ring (hole): the SDK draws with
  ``cv2.fillPoly``, which fills edge pixels too (along slanted edges OpenCV's line drawing may
  differ from this rule by a pixel; OpenCV is not a dependency). The square
  ``[1,1] [3,1] [3,3] [1,3]`` covers rows 1-3, columns 1-3 (COCO's corner convention would give
  rows 1-2). See :func:`fill_polygon`.
* ``points.exterior`` ``[[left, top], [right, bottom]]`` for ``rectangle``, both corners'
  pixels included: a box-only instance with box ``(left, top, right + 1, bottom + 1)``.

Source of the format: Supervisely's SDK (``supervisely/geometry/bitmap.py``: ``data_2_base64``
and ``base64_2_data``; ``bitmap_base.py``: ``origin`` written ``[col, row]``; ``polygon.py``;
``rectangle.py``: inclusive ``right``/``bottom``; ``project/project.py``: annotation file
``<image name>.json``, legacy ``<stem>.json``) and the "Supervisely Annotation Format" pages of
its documentation (project structure, objects).

Samples: one per image, including images without objects. ``findings`` is the sorted distinct
class titles of the image's objects, or ``("no finding",)``. ``patient_id`` is
``"supervisely:" + value`` of an image tag named ``patient_id`` when present, else
``"supervisely:" + file stem`` (every image its own patient). ``boxes`` are the objects' boxes;
``masks`` is an :class:`~chestlens.data.annotations.InstanceMasks` with one layer per area class
of meta.json (shape bitmap, polygon, rectangle or any). Objects of other geometries (point,
line, graph...), and objects covering no pixel of the image, are skipped with one warning per
load. Annotations are decoded once when loading (to check them and compute boxes) and again
when masks are loaded.

Predictions go back to Supervisely as COCO (:func:`chestlens.data.annotations.export_coco`).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import warnings
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from chestlens.data.annotations import Box, Instance, InstanceMasks, mask_box
from chestlens.data.formats._common import relative_posix
from chestlens.data.records import Modality, Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.errors import ChestlensInputError

SOURCE = "supervisely"
FOLDER = "supervisely"
META_FILE = "meta.json"
NO_FINDING = "no finding"
AREA_GEOMETRIES = ("bitmap", "polygon", "rectangle")
PATIENT_TAG = "patient_id"


@dataclass(frozen=True, slots=True)
class Annotation:
    """One parsed annotation file.

    Attributes:
        shape: ``(rows, cols)`` from ``size``.
        instances: the area objects that cover at least one pixel, in file order.
        skipped: objects of other geometries or covering no pixel.
        tags: image tag name -> value (``""`` for tags without a value).
    """

    shape: tuple[int, int]
    instances: list[Instance]
    skipped: int
    tags: dict[str, str]


def detect(folder: Path) -> bool:
    """True when ``folder`` has ``meta.json`` and a sub-folder with both ``ann/`` and ``img/``."""
    if not (folder / META_FILE).is_file():
        return False
    return any((d / "ann").is_dir() and (d / "img").is_dir() for d in folder.iterdir() if d.is_dir())


def load(folder: Path) -> list[Sample]:
    """Every image of a Supervisely project (see :func:`load_supervisely`)."""
    return load_supervisely(folder)


def load_supervisely(project: Path, *, modality: Modality = "xray") -> list[Sample]:
    """Read a Supervisely project (module docstring) into one :class:`Sample` per image.

    Raises:
        ChestlensInputError: missing or malformed meta.json, an image without annotation file or
            the reverse, a malformed annotation (named by file and object index), an object of a
            class not in meta.json.
    """
    shapes = read_meta(project / META_FILE)
    classes = tuple(title for title, shape in shapes.items() if shape in (*AREA_GEOMETRIES, "any"))
    samples, skipped = [], 0
    for dataset in dataset_folders(project):
        for image, ann_path in image_annotation_pairs(dataset):
            annotation = read_annotation(ann_path, shapes)
            skipped += annotation.skipped
            labels = [instance.label for instance in annotation.instances]
            patient = annotation.tags.get(PATIENT_TAG) or image.stem
            samples.append(
                Sample(
                    source=SOURCE,
                    uid=f"{SOURCE}/{relative_posix(image, project)}",
                    path=image,
                    patient_id=f"{SOURCE}:{patient}",
                    findings=tuple(sorted(set(labels))) or (NO_FINDING,),
                    modality=modality,
                    masks=InstanceMasks(classes, annotation.shape, partial(read_instances, ann_path, shapes)),
                    boxes=tuple((*instance.box, instance.label) for instance in annotation.instances),
                    extra={
                        "dataset": relative_posix(dataset, project),
                        "tags": ";".join(sorted(annotation.tags)),
                        "instances": str(len(labels)),
                    },
                )
            )
    if not samples:
        raise ChestlensInputError(project, "no images found in <dataset>/img/ folders")
    if skipped:
        warnings.warn(
            f"{project}: skipped {skipped} objects that are not areas (bitmap, polygon, rectangle) "
            "or cover no pixel of their image",
            stacklevel=2,
        )
    return samples


def read_meta(path: Path) -> dict[str, str]:
    """Class title -> shape from a project's ``meta.json``, in file order."""
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ChestlensInputError(path, "no 'classes' list: not a Supervisely project meta.json")
    shapes: dict[str, str] = {}
    for index, item in enumerate(data["classes"]):
        title, shape = (item.get("title"), item.get("shape")) if isinstance(item, dict) else (None, None)
        if not isinstance(title, str) or not title or not isinstance(shape, str):
            raise ChestlensInputError(path, f"classes[{index}]: needs string 'title' and 'shape'")
        if title in shapes:
            raise ChestlensInputError(path, f"classes[{index}]: duplicate class title {title!r}")
        shapes[title] = shape
    return shapes


def dataset_folders(project: Path) -> list[Path]:
    """Folders under ``project`` (any depth, sorted, hidden skipped) holding both ``ann/`` and ``img/``."""
    found = []
    for current, dirs, _ in os.walk(project):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "ann" in dirs and "img" in dirs:
            found.append(Path(current))
            dirs[:] = [d for d in dirs if d not in ("ann", "img")]
    return found


def image_annotation_pairs(dataset: Path) -> list[tuple[Path, Path]]:
    """``(image, annotation)`` pairs of one dataset folder: ``ann/<image name>.json``, else the
    legacy ``ann/<image stem>.json``.

    Raises:
        ChestlensInputError: an image without annotation file, or an annotation without image.
    """
    annotations = {p.name: p for p in (dataset / "ann").iterdir() if p.is_file() and p.suffix == ".json"}
    pairs = []
    for image in sorted(p for p in (dataset / "img").iterdir() if p.is_file() and not p.name.startswith(".")):
        name = f"{image.name}.json" if f"{image.name}.json" in annotations else f"{image.stem}.json"
        if name not in annotations:
            raise ChestlensInputError(image, f"no annotation file ann/{image.name}.json")
        pairs.append((image, annotations.pop(name)))
    if annotations:
        orphan = min(annotations.values())
        raise ChestlensInputError(orphan, "annotation file without its image in img/")
    return pairs


def read_instances(path: Path, shapes: dict[str, str]) -> list[Instance]:
    """The instances of one annotation file (the ``read`` of :class:`InstanceMasks`)."""
    return read_annotation(path, shapes).instances


def read_annotation(path: Path, shapes: dict[str, str]) -> Annotation:
    """Parse and decode one annotation file against the class shapes of meta.json.

    Raises:
        ChestlensInputError: malformed JSON or object, unknown class (named by object index).
    """
    data = _read_json(path)
    size = data.get("size") if isinstance(data, dict) else None
    if not isinstance(size, dict) or not all(
        _is_int(size.get(k)) and size[k] > 0 for k in ("height", "width")
    ):
        raise ChestlensInputError(path, "needs 'size' with positive integer 'height' and 'width'")
    objects = data.get("objects", [])
    if not isinstance(objects, list):
        raise ChestlensInputError(path, "'objects' is not a list")
    shape = (size["height"], size["width"])
    instances, skipped = [], 0
    for index, obj in enumerate(objects):
        title = obj.get("classTitle") if isinstance(obj, dict) else None
        where = f"objects[{index}] ({title!r})"
        if title not in shapes:
            raise ChestlensInputError(path, f"{where}: class not in {META_FILE}")
        geometry = obj.get("geometryType") if shapes[title] == "any" else shapes[title]
        if geometry not in AREA_GEOMETRIES:
            skipped += 1
            continue
        try:
            instance = _instance(title, geometry, obj, shape)
        except ValueError as exc:
            raise ChestlensInputError(path, f"{where}: {exc}") from None
        if instance is None:
            skipped += 1
        else:
            instances.append(instance)
    return Annotation(
        shape=shape, instances=instances, skipped=skipped, tags=_tags(path, data.get("tags", []))
    )


def decode_bitmap(data: str) -> np.ndarray:
    """Boolean mask of a Supervisely ``bitmap.data`` string (module docstring), ValueError if bad."""
    try:
        raw = base64.b64decode(data)
    except (ValueError, TypeError):
        raise ValueError("bitmap data is not base64") from None
    try:
        png = zlib.decompress(raw)
    except zlib.error:
        png = raw  # the SDK also accepts an uncompressed base64 PNG
    try:
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            if "transparency" in image.info:
                image = image.convert("RGBA")
            bands = image.getbands()
            pixels = np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError):
        raise ValueError("bitmap data is not a (zlib-compressed) PNG") from None
    if "A" in bands:
        return pixels[..., bands.index("A")] != 0
    return pixels != 0 if pixels.ndim == 2 else pixels.any(axis=-1)


def fill_polygon(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside or on the boundary of a closed polygon.

    Args:
        points: ``(n, 2)`` vertices ``(x, y)`` = (column, row) on pixel centres; integer or not.
        shape: ``(rows, cols)`` of the output; the polygon is clipped to it.

    Scanline fill: on each row, edges crossing it (half-open in ``y``) give sorted intersections
    whose pairs bound inside spans, filled from ``ceil(left)`` to ``floor(right)`` inclusive;
    horizontal edges on the row and integer vertices are added, so every pixel centre on the
    boundary is in. Intersections are computed as ``x0 + (row - y0) * dx / dy`` so that
    integer-valued crossings are exact.
    """
    rows, cols = shape
    mask = np.zeros(shape, dtype=bool)
    x0, y0 = points[:, 0].astype(float), points[:, 1].astype(float)
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    low, high = np.minimum(y0, y1), np.maximum(y0, y1)
    for row in range(max(math.ceil(low.min()), 0), min(math.floor(high.max()), rows - 1) + 1):
        crossing = (low <= row) & (row < high)
        xs = np.sort(x0[crossing] + (row - y0[crossing]) * (x1 - x0)[crossing] / (y1 - y0)[crossing])
        flat = (y0 == row) & (y1 == row)
        spans = [
            *zip(xs[0::2], xs[1::2], strict=True),
            *zip(np.minimum(x0, x1)[flat], np.maximum(x0, x1)[flat], strict=True),
        ]
        for left, right in spans:
            start, stop = max(math.ceil(left), 0), min(math.floor(right), cols - 1)
            if start <= stop:
                mask[row, start : stop + 1] = True
    on_grid = (x0 == np.round(x0)) & (y0 == np.round(y0)) & (x0 >= 0) & (x0 < cols) & (y0 >= 0) & (y0 < rows)
    mask[y0[on_grid].astype(int), x0[on_grid].astype(int)] = True
    return mask


def _instance(title: str, geometry: str, obj: dict, shape: tuple[int, int]) -> Instance | None:
    """The object as an :class:`Instance`, None if it covers no pixel; ValueError if malformed."""
    if geometry == "bitmap":
        bitmap = obj.get("bitmap")
        origin = bitmap.get("origin") if isinstance(bitmap, dict) else None
        if not isinstance(origin, list) or len(origin) != 2 or not all(_is_int(v) for v in origin):
            raise ValueError("bitmap needs 'data' and 'origin' [x, y] (integers)")
        mask = _paste(decode_bitmap(bitmap.get("data")), origin, shape)
    else:
        exterior, interior = _points(obj)
        if geometry == "rectangle":
            return _rectangle(title, exterior, shape)
        mask = fill_polygon(exterior, shape)
        for hole in interior:
            mask &= ~fill_polygon(hole, shape)
    return Instance(label=title, mask=mask, box=mask_box(mask)) if mask.any() else None


def _rectangle(title: str, corners: np.ndarray, shape: tuple[int, int]) -> Instance | None:
    if len(corners) != 2:
        raise ValueError("rectangle needs exactly 2 exterior points [left, top], [right, bottom]")
    rows, cols = shape
    (left, top), (right, bottom) = corners.min(axis=0), corners.max(axis=0)
    box: Box = (
        float(min(max(math.ceil(left), 0), cols)),
        float(min(max(math.ceil(top), 0), rows)),
        float(min(max(math.floor(right) + 1, 0), cols)),
        float(min(max(math.floor(bottom) + 1, 0), rows)),
    )
    return Instance(label=title, mask=None, box=box) if box[0] < box[2] and box[1] < box[3] else None


def _points(obj: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    points = obj.get("points")
    if not isinstance(points, dict):
        raise ValueError("needs 'points' with 'exterior' and 'interior'")
    rings = [points.get("exterior"), *(points.get("interior") or [])]
    arrays = []
    for ring in rings:
        if not isinstance(ring, list) or not ring or not all(_is_point(p) for p in ring):
            raise ValueError("points must be non-empty lists of [x, y] numbers")
        arrays.append(np.asarray(ring, dtype=float))
    return arrays[0], arrays[1:]


def _paste(bitmap: np.ndarray, origin: list[int], shape: tuple[int, int]) -> np.ndarray:
    """Place ``bitmap`` with its top-left pixel at column ``origin[0]``, row ``origin[1]`` (clipped)."""
    x, y = origin
    mask = np.zeros(shape, dtype=bool)
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + bitmap.shape[0], shape[0]), min(x + bitmap.shape[1], shape[1])
    if top < bottom and left < right:
        mask[top:bottom, left:right] = bitmap[top - y : bottom - y, left - x : right - x]
    return mask


def _tags(path: Path, tags: Any) -> dict[str, str]:
    """Image tags: ``[{"name", "value"}, ...]`` (or the old list of names) -> name -> value."""
    if not isinstance(tags, list):
        raise ChestlensInputError(path, "'tags' is not a list")
    result = {}
    for index, tag in enumerate(tags):
        name, value = (tag.get("name"), tag.get("value")) if isinstance(tag, dict) else (tag, None)
        if not isinstance(name, str):
            raise ChestlensInputError(path, f"tags[{index}]: needs a string 'name'")
        result[name] = "" if value is None else str(value)
    return result


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChestlensInputError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChestlensInputError(path, f"not a readable JSON file: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_point(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="Supervisely project (meta.json + <dataset>/img, ann): bitmaps, polygons, rectangles",
        detect=detect,
        load=load,
    )
)
