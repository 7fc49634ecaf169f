"""RSNA Pneumonia Detection Challenge (Kaggle, 2018) in its original layout.

Layout (stage 2 names; the stage 1 names ``stage_1_*`` are accepted too)::

    stage_2_train_labels.csv          patientId,x,y,width,height,Target
    stage_2_detailed_class_info.csv   patientId,class
    stage_2_train_images/<patientId>.dcm

One row of the labels file per box: ``(x, y)`` is the upper-left corner and ``width``/``height``
the size, in pixels of the DICOM image (1024x1024); ``Target`` 1 rows carry a lung-opacity box,
``Target`` 0 rows have empty (NaN) box fields. An image with several boxes has several rows.
The class file gives one of ``"Lung Opacity"``, ``"Normal"``, ``"No Lung Opacity / Not Normal"``
per image (repeated once per box row).

Samples: one per image listed in the labels file and found on disk; ``boxes`` are
``(x, y, x + width, y + height, "opacity")``; ``findings`` is ``(class,)``. Despite its name,
RSNA's ``patientId`` identifies one image (one radiograph per id, anonymised), so
``patient_id`` is ``"rsna:<patientId>"`` and images of one person cannot be grouped. With
``read_headers=True`` (the default) view (``PA``/``AP``), sex and age come from each DICOM header
(pixel data is not read; about 0.5 ms per file, some 15 s for the 26.7k images).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

from chestlens.data.formats._common import index_dicoms, read_dicom_header, relative_posix
from chestlens.data.records import Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.errors import ChestlensInputError

SOURCE = "rsna"
BOX_CLASS = "opacity"
_STAGES = ("stage_2", "stage_1")
_LABEL_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
_CLASS_COLUMNS = ("patientId", "class")

Box = tuple[float, float, float, float, str]


def label_files(folder: Path) -> tuple[Path, Path] | None:
    """``(labels, class_info)`` CSV paths of the newest stage whose labels file is in ``folder``."""
    for stage in _STAGES:
        labels = folder / f"{stage}_train_labels.csv"
        if labels.is_file() and set(_LABEL_COLUMNS) <= set(_header(labels)):
            return labels, folder / f"{stage}_detailed_class_info.csv"
    return None


def detect(folder: Path) -> bool:
    """True when ``folder`` holds ``stage_2_train_labels.csv`` (or stage 1) with RSNA columns."""
    return label_files(folder) is not None


def load(folder: Path) -> list[Sample]:
    """All labelled images of an RSNA folder, with DICOM headers read (see :func:`load_rsna`)."""
    return load_rsna(folder)


def load_rsna(folder: Path, *, read_headers: bool = True) -> list[Sample]:
    """Read an RSNA pneumonia folder (module docstring) into one :class:`Sample` per image.

    Args:
        folder: the dataset folder holding both CSV files and the DICOM images.
        read_headers: read view, sex and age from each DICOM header.

    Raises:
        ChestlensInputError: a missing CSV or column, a malformed row (named by file and line),
            an image without a class, or none of the listed images found.
    """
    files = label_files(folder)
    if files is None:
        raise ChestlensInputError(folder, "no RSNA labels file (stage_2_train_labels.csv) found")
    labels_path, classes_path = files
    if not classes_path.is_file():
        raise ChestlensInputError(classes_path, "missing: the RSNA class file is needed for the findings")
    boxes = read_boxes(labels_path)
    classes = read_classes(classes_path)
    dicoms = index_dicoms(folder, list(boxes), labels_path)
    samples = []
    for pid, image_boxes in boxes.items():
        if pid not in dicoms:
            continue
        if pid not in classes:
            raise ChestlensInputError(classes_path, f"no class for patientId {pid}")
        header = read_dicom_header(dicoms[pid]) if read_headers else None
        samples.append(
            Sample(
                source=SOURCE,
                uid=f"{SOURCE}/{relative_posix(dicoms[pid], folder)}",
                path=dicoms[pid],
                patient_id=f"{SOURCE}:{pid}",
                findings=(classes[pid],),
                modality="xray",
                view=header.view if header else None,
                sex=header.sex if header else None,
                age=header.age if header else None,
                boxes=tuple(image_boxes),
                extra={"target": "1" if image_boxes else "0"},
            )
        )
    return samples


def read_boxes(path: Path) -> dict[str, list[Box]]:
    """Parse the labels CSV: patientId -> boxes ``(x0, y0, x1, y1, "opacity")`` (empty for Target 0).

    Raises:
        ChestlensInputError: missing columns, a Target other than 0/1, or a Target 1 row whose box
            is missing, non-numeric or of non-positive size (naming file and line).
    """
    result: dict[str, list[Box]] = {}
    for line, row in _rows(path, _LABEL_COLUMNS):
        target = row["Target"]
        if target not in ("0", "1"):
            raise ChestlensInputError(path, f"line {line}: Target must be 0 or 1, got {target!r}")
        boxes = result.setdefault(row["patientId"], [])
        if target == "0":
            continue
        try:
            x, y, width, height = (float(row[key]) for key in ("x", "y", "width", "height"))
        except ValueError:
            raise ChestlensInputError(path, f"line {line}: Target 1 row needs a numeric box") from None
        if not all(math.isfinite(v) for v in (x, y, width, height)) or width <= 0 or height <= 0:
            raise ChestlensInputError(path, f"line {line}: box must be finite with positive size")
        boxes.append((x, y, x + width, y + height, BOX_CLASS))
    return result


def read_classes(path: Path) -> dict[str, str]:
    """Parse the class CSV: patientId -> class.

    Raises:
        ChestlensInputError: missing columns, an empty class, or one image given two classes.
    """
    result: dict[str, str] = {}
    for line, row in _rows(path, _CLASS_COLUMNS):
        pid, name = row["patientId"], row["class"]
        if not name:
            raise ChestlensInputError(path, f"line {line}: empty class")
        if result.setdefault(pid, name) != name:
            raise ChestlensInputError(path, f"line {line}: {pid} has classes {result[pid]!r} and {name!r}")
    return result


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, {column: stripped value})`` for each non-empty row; checks columns."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in columns if c not in reader.fieldnames]
        if missing:
            raise ChestlensInputError(path, f"missing columns {missing}")
        for row in reader:
            values = {c: (row[c] or "").strip() for c in columns}
            if not any(values.values()):
                continue
            if not values["patientId"]:
                raise ChestlensInputError(path, f"line {reader.line_num}: empty patientId")
            yield reader.line_num, values


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [name.strip() for name in next(csv.reader(handle), [])]
    except (UnicodeDecodeError, csv.Error):
        return []


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder="rsna-pneumonia-detection-challenge",
        modality="xray",
        description="RSNA Pneumonia Detection (Kaggle 2018): DICOM + opacity boxes and 3 classes",
        detect=detect,
        load=load,
    )
)
