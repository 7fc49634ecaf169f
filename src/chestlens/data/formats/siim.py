"""SIIM-ACR Pneumothorax Segmentation (Kaggle, 2019) in its original layout.

Layout (the folder this adapter reads)::

    train-rle.csv                 ImageId, EncodedPixels   (header written "ImageId, EncodedPixels")
    stage_2_train.csv             ImageId,EncodedPixels    (stage-1 train + test labels; preferred)
    dicom-images-train/<study>/<series>/<ImageId>.dcm      (or any folder tree, or flat <ImageId>.dcm)

Each CSV row is one pneumothorax instance in the SIIM relative RLE (:mod:`chestlens.data.rle`,
``convention="siim"``); several rows with one ImageId are several instances, united into the
semantic mask; ``-1`` (``" -1"`` in ``train-rle.csv``) marks an image without pneumothorax. Both
files use the same encoding (``stage_2_train.csv`` adds the stage-1 test images); when both are
present only ``stage_2_train.csv`` is read. Only images listed in the CSV are loaded (the
``dicom-images-test`` files of stage 1 carry labels only in ``stage_2_train.csv``).

Samples: findings ``("Pneumothorax",)`` or ``("No Pneumothorax",)``; ``masks`` is a
:class:`SiimMasks` (layer ``"pneumothorax"``, empty for negatives; :meth:`SiimMasks.instances`
gives the instances). With ``read_headers=True`` (the default) view, sex, age, image size and the
patient key come from each DICOM header (pixel data is not read; about 0.5 ms per file, some
6 s for the 12k images). ``patient_id`` is ``"siim:" + salted_key(PatientID)``
(:func:`chestlens.io.deid.salted_key`). SIIM's anonymisation is reported to give every image its
own PatientID, in which case images cannot be grouped by patient and each image is its own
group. With ``read_headers=False`` the key hashes the ImageId instead, view/sex/age are None and
the image size is read when a mask is first loaded.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from chestlens.data.annotations import Instance, mask_box
from chestlens.data.formats._common import index_dicoms, read_dicom_header, relative_posix
from chestlens.data.records import Masks, Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.rle import Convention, decode_rle, parse_rle
from chestlens.errors import ChestlensInputError
from chestlens.io.deid import salted_key

SOURCE = "siim"
# Label files in order of preference.
LABEL_FILES = ("stage_2_train.csv", "train-rle.csv")
_ID_COLUMN = "ImageId"
_RLE_COLUMN = "EncodedPixels"
_NO_PNEUMOTHORAX = "-1"


@dataclass(frozen=True, slots=True)
class SiimMasks:
    """Lazy pneumothorax mask of one SIIM image.

    Attributes:
        image: the DICOM file (its Rows/Columns give the mask shape when ``shape`` is None).
        rles: one SIIM-convention RLE string per instance; empty for images without pneumothorax.
        label_file: the CSV the strings came from, and ``lines`` their 1-based line numbers
            there, for error messages.
        shape: ``(rows, cols)`` if already known from the header.
        convention: the RLE convention of ``rles`` (:mod:`chestlens.data.rle`).
    """

    classes: ClassVar[tuple[str, ...]] = ("pneumothorax",)

    image: Path
    rles: tuple[str, ...]
    label_file: Path
    lines: tuple[int, ...]
    shape: tuple[int, int] | None = None
    convention: Convention = "siim"

    def instances(self) -> list[Instance]:
        """Each pneumothorax instance (boolean ``(rows, cols)`` mask and its box), in CSV order."""
        shape = self.shape or _image_shape(self.image)
        found = []
        for rle, line in zip(self.rles, self.lines, strict=True):
            try:
                mask = decode_rle(rle, shape, convention=self.convention)
            except ChestlensInputError as exc:
                raise ChestlensInputError(self.label_file, f"line {line}: {exc.reason}") from None
            if mask.any():
                found.append(Instance("pneumothorax", mask, mask_box(mask)))
        return found

    def load(self) -> Masks:
        """The semantic mask: layer ``"pneumothorax"``, the union of the instances, ``(rows, cols)``."""
        shape = self.shape or _image_shape(self.image)
        union = np.zeros(shape, dtype=bool)
        for instance in self.instances():
            union |= instance.mask
        return Masks(layers={"pneumothorax": union})


def label_file(folder: Path) -> Path | None:
    """The SIIM label CSV in ``folder`` (``stage_2_train.csv`` preferred), or None."""
    for name in LABEL_FILES:
        candidate = folder / name
        if candidate.is_file() and _has_siim_header(candidate):
            return candidate
    return None


def detect(folder: Path) -> bool:
    """True when ``folder`` holds ``stage_2_train.csv`` or ``train-rle.csv`` with SIIM columns."""
    return label_file(folder) is not None


def load(folder: Path) -> list[Sample]:
    """All labelled images of a SIIM folder, with DICOM headers read (see :func:`load_siim`)."""
    return load_siim(folder)


def load_siim(folder: Path, *, read_headers: bool = True, convention: Convention = "siim") -> list[Sample]:
    """Read a SIIM-ACR folder (module docstring) into one :class:`Sample` per labelled DICOM.

    Args:
        folder: the dataset folder holding the label CSV and the DICOM tree.
        read_headers: read view, sex, age, size and PatientID from each DICOM header.
        convention: RLE convention of the label file; both SIIM files use ``"siim"``. Pass
            ``"kaggle"`` for a label file re-encoded in standard (absolute, 1-indexed) RLE.

    Raises:
        ChestlensInputError: no label CSV, a malformed row (named by file and line), or none of the
            listed images found.
    """
    labels = label_file(folder)
    if labels is None:
        raise ChestlensInputError(folder, f"no SIIM label file ({' or '.join(LABEL_FILES)}) found")
    rows = read_labels(labels)
    dicoms = index_dicoms(folder, list(rows), labels)
    return [
        _sample(folder, dicoms[image_id], image_id, entries, labels, read_headers, convention)
        for image_id, entries in rows.items()
        if image_id in dicoms
    ]


def read_labels(path: Path) -> dict[str, list[tuple[int, str]]]:
    """Parse a SIIM label CSV: ImageId -> ``[(line, rle), ...]`` in file order.

    ``-1`` rows are dropped, so an image without pneumothorax maps to an empty list. Column names
    are matched after stripping spaces (``train-rle.csv`` writes ``" EncodedPixels"``).

    Raises:
        ChestlensInputError: missing columns, a short row, an empty field, an RLE string with bad
            syntax, or an image listed both as ``-1`` and with a mask (naming file and line).
    """
    result: dict[str, list[tuple[int, str]]] = {}
    negatives: set[str] = set()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if _ID_COLUMN not in header or _RLE_COLUMN not in header:
            raise ChestlensInputError(path, f"needs columns {_ID_COLUMN} and {_RLE_COLUMN}, found {header}")
        id_index, rle_index = header.index(_ID_COLUMN), header.index(_RLE_COLUMN)
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) <= max(id_index, rle_index):
                raise ChestlensInputError(path, f"line {line}: expected {len(header)} fields, got {len(row)}")
            image_id, rle = row[id_index].strip(), row[rle_index].strip()
            if not image_id or not rle:
                raise ChestlensInputError(path, f"line {line}: empty {_ID_COLUMN} or {_RLE_COLUMN}")
            entries = result.setdefault(image_id, [])
            if rle == _NO_PNEUMOTHORAX:
                negatives.add(image_id)
            else:
                try:
                    parse_rle(rle)
                except ChestlensInputError as exc:
                    raise ChestlensInputError(path, f"line {line}: {exc.reason}") from None
                entries.append((line, rle))
            if image_id in negatives and entries:
                raise ChestlensInputError(
                    path, f"line {line}: image {image_id} is listed both as -1 and with a mask"
                )
    return result


def _sample(
    folder: Path,
    dicom: Path,
    image_id: str,
    entries: list[tuple[int, str]],
    labels: Path,
    read_headers: bool,
    convention: Convention,
) -> Sample:
    header = read_dicom_header(dicom) if read_headers else None
    shape = (header.rows, header.cols) if header and header.rows and header.cols else None
    masks = SiimMasks(
        image=dicom,
        rles=tuple(rle for _, rle in entries),
        label_file=labels,
        lines=tuple(line for line, _ in entries),
        shape=shape,
        convention=convention,
    )
    patient = header.patient_id if header and header.patient_id else image_id
    return Sample(
        source=SOURCE,
        uid=f"{SOURCE}/{relative_posix(dicom, folder)}",
        path=dicom,
        patient_id=f"{SOURCE}:{salted_key(patient)}",
        findings=("Pneumothorax",) if entries else ("No Pneumothorax",),
        modality="xray",
        view=header.view if header else None,
        sex=header.sex if header else None,
        age=header.age if header else None,
        masks=masks,
        extra={"image_id": image_id, "instances": str(len(entries))},
    )


def _image_shape(path: Path) -> tuple[int, int]:
    header = read_dicom_header(path)
    if header.rows is None or header.cols is None:
        raise ChestlensInputError(path, "DICOM header has no Rows/Columns")
    return header.rows, header.cols


def _has_siim_header(path: Path) -> bool:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = [name.strip() for name in next(csv.reader(handle), [])]
    except (UnicodeDecodeError, csv.Error):
        return False
    return _ID_COLUMN in header and _RLE_COLUMN in header


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder="siim-acr-pneumothorax-segmentation",
        modality="xray",
        description="SIIM-ACR Pneumothorax (Kaggle 2019): DICOM + RLE pneumothorax masks",
        detect=detect,
        load=load,
    )
)
