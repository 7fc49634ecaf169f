"""CSV manifest: the generic way to bring your own labelled images.

A ``manifest.csv`` in the data root (or any CSV given to :func:`load_manifest`) with one row per
image. Column names are matched case-insensitively after stripping spaces.

Required columns:
    ``path``: image file, relative to the CSV's folder (an absolute path is used as is).
    ``label``: the finding(s), several separated by ``|`` (``"COVID-19|ARDS"``); kept verbatim.

Optional columns (blank cells mean unknown):
    ``patient_id``: groups images of one person (otherwise the file stem, with a warning).
    ``sex``: ``M``/``F`` (also ``male``/``female``; ``U``/``unknown`` mean unknown).
    ``age``: years (``"54"``, ``"54.5"``) or a DICOM age string (``"054Y"``, ``"006M"``).
    ``view``: projection as written (``PA``, ``AP``, ``L``, ``axial``).
    ``modality``: ``xray`` (default; also ``x-ray``, ``cr``, ``dx``) or ``ct``.
    ``source``: origin of the row (e.g. a hospital), used as ``Sample.source`` and as the prefix
        of ``uid`` and ``patient_id`` (default ``"manifest"``); report results per source.
    ``mask``: a mask image (PNG), relative like ``path``, non-zero = inside; layer ``"mask"``.
    ``mask_<name>``: more mask images, one layer ``<name>`` each (``mask_lung``).
Any other column is kept verbatim in ``Sample.extra`` (e.g. ``split``).

Samples: ``uid`` is ``"<source>/<path as written>"``, ``patient_id`` ``"<source>:<patient_id>"``.
Masks are loaded lazily and must be on the image's pixel grid.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from chestlens.data.fields import parse_age
from chestlens.data.records import Masks, Modality, Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.errors import ChestlensInputError

SOURCE = "manifest"
MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("path", "label")
KNOWN_COLUMNS = frozenset({*REQUIRED_COLUMNS, "patient_id", "sex", "age", "view", "modality", "source"})
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "u": None, "unknown": None}
_MODALITY: dict[str, Modality] = {"xray": "xray", "x-ray": "xray", "cr": "xray", "dx": "xray", "ct": "ct"}


@dataclass(frozen=True, slots=True)
class PngMasks:
    """Lazy masks read from image files (non-zero pixels = inside).

    Attributes:
        classes: layer names, one per file.
        files: the mask files, in the order of ``classes``.
    """

    classes: tuple[str, ...]
    files: tuple[Path, ...]

    def load(self) -> Masks:
        """Each file as a boolean ``(rows, cols)`` layer (RGB files: any non-zero colour channel)."""
        layers = {}
        for name, path in zip(self.classes, self.files, strict=True):
            try:
                with Image.open(path) as image:
                    pixels = np.asarray(image)
            except OSError as exc:
                raise ChestlensInputError(path, f"cannot read mask image: {exc}") from None
            layers[name] = (pixels[..., :3].max(axis=-1) if pixels.ndim == 3 else pixels) > 0
        return Masks(layers=layers)


def detect(folder: Path) -> bool:
    """True when ``folder`` holds a ``manifest.csv``."""
    return (folder / MANIFEST_NAME).is_file()


def load(folder: Path) -> list[Sample]:
    """The samples of ``folder/manifest.csv`` (see :func:`load_manifest`)."""
    return load_manifest(folder / MANIFEST_NAME)


def load_manifest(csv_path: Path) -> list[Sample]:
    """Read a manifest CSV (module docstring) into one :class:`Sample` per row.

    Raises:
        ChestlensInputError: naming the CSV (and the line) for a missing required column, an empty
            path or label, an image or mask file that does not exist, a bad sex, age or modality,
            or a path listed twice.
    """
    if not csv_path.is_file():
        raise ChestlensInputError(csv_path, "manifest CSV not found")
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    without_patient = 0
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip().lower() for name in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ChestlensInputError(csv_path, f"missing required column(s) {', '.join(missing)}")
        reader.fieldnames = columns
        for row in reader:
            values = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if not any(values.values()):
                continue
            line = reader.line_num
            try:
                sample = _sample(csv_path, values)
            except ValueError as exc:
                raise ChestlensInputError(csv_path, f"line {line}: {exc}") from None
            if sample.uid in seen:
                raise ChestlensInputError(
                    csv_path, f"line {line}: {values['path']} is already listed on line {seen[sample.uid]}"
                )
            seen[sample.uid] = line
            without_patient += not values.get("patient_id")
            samples.append(sample)
    if without_patient:
        warnings.warn(
            f"{csv_path}: {without_patient} rows have no patient_id; their file stem is used, so one "
            "person's images can fall into different splits",
            stacklevel=2,
        )
    return samples


def _sample(csv_path: Path, values: dict[str, str]) -> Sample:
    """One row -> Sample; raises ValueError with the reason (the caller adds file and line)."""
    base = csv_path.parent
    path_text = values["path"]
    if not path_text:
        raise ValueError("empty path")
    image = base / path_text
    if not image.is_file():
        raise ValueError(f"image file not found: {path_text}")
    findings = tuple(part.strip() for part in values["label"].split("|") if part.strip())
    if not findings:
        raise ValueError("empty label")
    source = values.get("source") or SOURCE
    patient = values.get("patient_id") or Path(path_text).stem
    return Sample(
        source=source,
        uid=f"{source}/{Path(path_text).as_posix()}",
        path=image,
        patient_id=f"{source}:{patient}",
        findings=findings,
        modality=_modality(values.get("modality", "")),
        view=values.get("view") or None,
        sex=_sex(values.get("sex", "")),
        age=parse_age(values.get("age", ""), strict=True),
        masks=_masks(base, values),
        extra={k: v for k, v in values.items() if k not in KNOWN_COLUMNS and not _is_mask_column(k)},
    )


def _masks(base: Path, values: dict[str, str]) -> PngMasks | None:
    names, files = [], []
    for column, text in values.items():
        if not (_is_mask_column(column) and text):
            continue
        path = base / text
        if not path.is_file():
            raise ValueError(f"mask file not found: {text}")
        names.append("mask" if column == "mask" else column.removeprefix("mask_"))
        files.append(path)
    return PngMasks(classes=tuple(names), files=tuple(files)) if files else None


def _is_mask_column(column: str) -> bool:
    return column == "mask" or (column.startswith("mask_") and len(column) > len("mask_"))


def _sex(text: str) -> str | None:
    if not text:
        return None
    key = text.lower()
    if key not in _SEX:
        raise ValueError(f"sex must be M or F (or blank/U for unknown), got {text!r}")
    return _SEX[key]


def _modality(text: str) -> Modality:
    if not text:
        return "xray"
    key = text.lower()
    if key not in _MODALITY:
        raise ValueError(f"modality must be xray or ct, got {text!r}")
    return _MODALITY[key]


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder="manifest",
        modality="xray",
        description="Generic CSV manifest (manifest.csv): path, label[, patient_id, sex, age, view, mask...]",
        detect=detect,
        load=load,
        generic=True,
    )
)
