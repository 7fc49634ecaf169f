"""NIH ChestX-ray14 (Wang et al., CVPR 2017): ``Data_Entry_2017.csv`` + PNG images anywhere below.

Layout: ``<folder>/Data_Entry_2017.csv`` (or ``Data_Entry_2017_v2020.csv``) with the NIH columns
``Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age, Patient Gender, View Position,
OriginalImage[Width,Height], OriginalImagePixelSpacing[x,y]``; images are found by file name in any
sub-folder (NIH's ``images_0NN/images/``, DarkCovidNet's ``X-Ray Image DataSet/<No_findings|Pneumonia>/``).
CSV rows without an image file are skipped (subsets are the normal case).

``findings`` = ``Finding Labels`` split on ``|`` (multi-label, e.g. ``("Infiltration", "Pneumonia")``,
``("No Finding",)``); ``patient_id`` = ``nih:<Patient ID>`` (leading zeros dropped); ``age`` from
``"58"`` or ``"058Y"`` (older releases); ``view`` = ``View Position`` (``AP``/``PA``).

Pixel spacing: the CSV spacing refers to the ORIGINAL image (``extra["original_width"]``/
``["original_height"]`` pixels). NIH's PNGs and any copies are resized, so use :func:`pixel_spacing_mm`
with the actual image shape. The name of the sub-folder holding the image goes to ``extra["folder"]``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from chestlens.data.fields import parse_age, parse_sex
from chestlens.data.records import Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.sources import csv_header, read_table, sample_uid
from chestlens.errors import ChestlensInputError

SOURCE = "nih"
FOLDER = "nih-chestxray14-darkcovidnet"
METADATA_NAMES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
REQUIRED_COLUMNS = (
    "Image Index",
    "Finding Labels",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
)
# The header "OriginalImage[Width,Height]" is split by the comma into two CSV columns (same for spacing).
SIZE_COLUMNS = ("OriginalImage[Width", "Height]")
SPACING_COLUMNS = ("OriginalImagePixelSpacing[x", "y]")

logger = logging.getLogger(__name__)


def _metadata(folder: Path) -> Path | None:
    return next((folder / n for n in METADATA_NAMES if (folder / n).is_file()), None)


def detect(folder: Path) -> bool:
    """A ``Data_Entry_2017*.csv`` whose header has ``Image Index`` and ``Finding Labels``."""
    csv_path = _metadata(folder)
    return csv_path is not None and {"Image Index", "Finding Labels"} <= set(csv_header(csv_path))


def _index_pngs(folder: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.png")):
        index.setdefault(path.name, path)
    return index


def pixel_spacing_mm(sample: Sample, shape: tuple[int, int]) -> tuple[float, float] | None:
    """(row, column) spacing in mm of this sample's pixels when the image has ``shape`` (rows, cols).

    Scales the original spacing by ``original size / current size`` per axis, assuming the file is a
    resize of the whole original frame (true for NIH's 1024 px PNGs and the downscaled copies here).
    None when the CSV gave no spacing or size.
    """
    try:
        sx = float(sample.extra["original_spacing_x_mm"])
        sy = float(sample.extra["original_spacing_y_mm"])
        width = float(sample.extra["original_width"])
        height = float(sample.extra["original_height"])
    except (KeyError, ValueError):
        return None
    rows, cols = shape
    return sy * height / rows, sx * width / cols


def _extra(row: dict[str, str], path: Path, folder: Path) -> dict[str, str]:
    extra = {"folder": path.parent.relative_to(folder).as_posix()}
    pairs = (
        ("Follow-up #", "follow_up"),
        (SIZE_COLUMNS[0], "original_width"),
        (SIZE_COLUMNS[1], "original_height"),
        (SPACING_COLUMNS[0], "original_spacing_x_mm"),
        (SPACING_COLUMNS[1], "original_spacing_y_mm"),
    )
    for column, key in pairs:
        if row.get(column, "").strip():
            extra[key] = row[column].strip()
    return extra


def load(folder: Path) -> list[Sample]:
    """One sample per CSV row whose image file exists below ``folder``.

    Raises:
        ChestlensInputError: no/unreadable CSV, missing columns, or a row without image name or patient.
    """
    csv_path = _metadata(folder)
    if csv_path is None:
        raise ChestlensInputError(folder, f"no {METADATA_NAMES[0]} in this folder")
    table = read_table(csv_path, REQUIRED_COLUMNS)
    images = _index_pngs(folder)
    samples = []
    for number, row in enumerate(table.to_dict("records"), start=1):
        name, patient = row["Image Index"].strip(), row["Patient ID"].strip()
        if not name or not patient:
            raise ChestlensInputError(csv_path, f"data row {number}: empty Image Index or Patient ID")
        path = images.get(name)
        if path is None:
            continue
        samples.append(
            Sample(
                source=SOURCE,
                uid=sample_uid(SOURCE, folder, path),
                path=path,
                patient_id=f"{SOURCE}:{int(patient) if patient.isdigit() else patient}",
                findings=tuple(p.strip() for p in row["Finding Labels"].split("|") if p.strip()),
                modality="xray",
                view=row["View Position"].strip() or None,
                sex=parse_sex(row["Patient Gender"]),
                age=parse_age(row["Patient Age"]),
                extra=_extra(row, path, folder),
            )
        )
    logger.debug("%s: %d of %d CSV rows have an image", folder, len(samples), len(table))
    return samples


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="NIH ChestX-ray14: Data_Entry_2017.csv + PNGs in any sub-folder (multi-label)",
        detect=detect,
        load=load,
    )
)
