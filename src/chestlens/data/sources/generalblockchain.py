"""GeneralBlockchain COVID-19 chest X-ray segmentations (per-class masks on ieee8023 images).

Layout: ``<folder>/metadata.csv`` (ieee8023 rows), ``<folder>/images/<filename>``,
``<folder>/structure.csv`` (one row per image and class: ``Template Name``, ``Filename``, ``Mask``,
``Resolution`` = ``<width>x<height>`` of the image, box ``Top``, ``Left``, ``Width``, ``Height`` in
pixels of that grid) and ``<folder>/masks/<hash>_<id>.png``, each mask cropped to its own box
(RGBA; a pixel is in the class when any colour channel is non-zero and it is not transparent).

:class:`ClassMasks` places every crop back into the full frame at its box, after checking that the
``Resolution`` equals the image size and the crop equals the box size (mismatches raise
:class:`~chestlens.errors.ChestlensInputError`). Classes (``Template Name`` -> layer): Left/Right Lung ->
``lung_left``/``lung_right`` (patient's side), Cardiomediastinum -> ``cardiomediastinum``, Airways ->
``airways``, Ground Glass Opacities -> ``ggo``, Consolidation -> ``consolidation``, Pleural Effusion ->
``effusion``, Pneumothorax -> ``pneumothorax``, Monitoring Probes/Tubings/Central Venous Line/
Nosogastric Tube/Endotracheal Tube -> ``tubes``. Rows with an empty ``Mask`` (upstream: some
Monitoring Probes rows whose box is still in the original resolution) carry no annotation and are
skipped. The boxes go to ``Sample.boxes``.

Patients: ieee8023 ids with the ieee8023 adapter's rules (see :mod:`chestlens.data.sources.v7_lungs`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from chestlens.data.records import Masks, Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.sources import csv_header, image_size, read_table
from chestlens.data.sources.ieee8023 import MODALITIES, read_records
from chestlens.errors import ChestlensInputError

SOURCE = "generalblockchain"
FOLDER = "covid19-cxr-segmentations-generalblockchain"
STRUCTURE = "structure.csv"
STRUCTURE_COLUMNS = ("Template Name", "Filename", "Mask", "Resolution", "Top", "Left", "Width", "Height")
TEMPLATES = {
    "Left Lung": "lung_left",
    "Right Lung": "lung_right",
    "Cardiomediastinum": "cardiomediastinum",
    "Airways": "airways",
    "Ground Glass Opacities": "ggo",
    "Consolidation": "consolidation",
    "Pleural Effusion": "effusion",
    "Pneumothorax": "pneumothorax",
    "Monitoring Probes": "tubes",
    "Tubings": "tubes",
    "Central Venous Line": "tubes",
    "Nosogastric Tube": "tubes",
    "Endotracheal Tube": "tubes",
}
MASK_CLASSES = tuple(dict.fromkeys(TEMPLATES.values()))
_RESOLUTION = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Crop:
    """One class mask file and where it sits in the full frame (pixels: top row, left column, size)."""

    cls: str
    path: Path
    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True, slots=True)
class ClassMasks:
    """Lazy per-class masks of one image: ``load()`` -> layers of shape ``frame`` = (rows, cols)."""

    image_path: Path
    frame: tuple[int, int]
    crops: tuple[Crop, ...]
    classes: tuple[str, ...]

    def load(self) -> Masks:
        rows, cols = self.frame
        if image_size(self.image_path) != self.frame:
            raise ChestlensInputError(
                self.image_path,
                f"image size {image_size(self.image_path)} != structure.csv Resolution {self.frame}",
            )
        layers = {c: np.zeros(self.frame, dtype=bool) for c in self.classes}
        for crop in self.crops:
            with Image.open(crop.path) as image:
                rgba = np.asarray(image.convert("RGBA"))
            inside = (rgba[..., :3].max(axis=-1) > 0) & (rgba[..., 3] > 0)
            if inside.shape != (crop.height, crop.width):
                raise ChestlensInputError(
                    crop.path, f"mask is {inside.shape}, box is {(crop.height, crop.width)}"
                )
            if (
                crop.top < 0
                or crop.left < 0
                or crop.top + crop.height > rows
                or crop.left + crop.width > cols
            ):
                raise ChestlensInputError(crop.path, f"box outside the {rows}x{cols} frame")
            layers[crop.cls][crop.top : crop.top + crop.height, crop.left : crop.left + crop.width] |= inside
        return Masks(layers=layers)


def detect(folder: Path) -> bool:
    """``structure.csv`` (``Template Name``, ``Mask`` columns) next to ``metadata.csv`` and ``masks/``."""
    header = set(csv_header(folder / STRUCTURE))
    return (
        {"Template Name", "Mask"} <= header
        and (folder / "metadata.csv").is_file()
        and (folder / "masks").is_dir()
    )


def _class_name(template: str) -> str:
    return TEMPLATES.get(template, re.sub(r"\W+", "_", template.strip().lower()).strip("_"))


def _int(csv_path: Path, number: int, row: dict[str, str], column: str) -> int:
    try:
        return int(float(row[column]))
    except ValueError:
        raise ChestlensInputError(csv_path, f"data row {number}: {column} is {row[column]!r}") from None


def read_structure(folder: Path) -> dict[str, tuple[tuple[int, int], list[Crop]]]:
    """Image filename -> (frame (rows, cols), crops) from ``structure.csv``; rows without a mask skipped.

    Raises:
        ChestlensInputError: a bad ``Resolution``/box value, a missing mask file, or one image given two
            resolutions.
    """
    csv_path = folder / STRUCTURE
    table = read_table(csv_path, STRUCTURE_COLUMNS)
    result: dict[str, tuple[tuple[int, int], list[Crop]]] = {}
    for number, row in enumerate(table.to_dict("records"), start=1):
        if not row["Mask"].strip():
            continue
        match = _RESOLUTION.match(row["Resolution"])
        if match is None:
            raise ChestlensInputError(csv_path, f"data row {number}: Resolution is {row['Resolution']!r}")
        frame = (int(match.group(2)), int(match.group(1)))
        mask_path = folder / row["Mask"].strip()
        if not mask_path.is_file():
            raise ChestlensInputError(mask_path, f"mask named in {STRUCTURE} data row {number} is missing")
        crop = Crop(
            cls=_class_name(row["Template Name"]),
            path=mask_path,
            top=_int(csv_path, number, row, "Top"),
            left=_int(csv_path, number, row, "Left"),
            height=_int(csv_path, number, row, "Height"),
            width=_int(csv_path, number, row, "Width"),
        )
        known_frame, crops = result.setdefault(row["Filename"].strip(), (frame, []))
        if known_frame != frame:
            raise ChestlensInputError(csv_path, f"data row {number}: {row['Filename']} has two resolutions")
        crops.append(crop)
    return result


def load(folder: Path) -> list[Sample]:
    """One sample per image with at least one mask, its metadata row and its file present."""
    structure = read_structure(folder)
    samples = []
    for record in read_records(folder / "metadata.csv"):
        entry = structure.get(record.path.name)
        if entry is None or not record.path.is_file() or record.modality not in MODALITIES:
            logger.debug("%s: %s has no mask, file or usable modality", folder, record.path.name)
            continue
        frame, crops = entry
        present = {c.cls for c in crops}
        classes = tuple(c for c in MASK_CLASSES if c in present) + tuple(sorted(present - set(MASK_CLASSES)))
        boxes = tuple(
            (float(c.left), float(c.top), float(c.left + c.width), float(c.top + c.height), c.cls)
            for c in crops
        )
        masks = ClassMasks(record.path, frame, tuple(crops), classes)
        samples.append(record.to_sample(SOURCE, folder, masks=masks, boxes=boxes))
    return samples


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="GeneralBlockchain per-class X-ray masks (lungs, heart, GGO, consolidation, tubes...)",
        detect=detect,
        load=load,
    )
)
