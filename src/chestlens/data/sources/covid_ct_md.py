"""COVID-CT-MD (Afshar et al., Scientific Data 2021): DICOM series with slice- and lobe-level labels.

Layout: ``<folder>/Index.csv`` (``Label Index, Diagnosis, Relative Path, Folder/ID``),
``<folder>/Slice-level-labels-updated-1.npy`` (``(n_labelled, 200)``, 1 = slice shows infection),
``<folder>/Lobe-level-labels-updated-1.npy`` (``(n_labelled, 200, 5)``, lobes in :data:`LOBES` order)
and one folder of ``.dcm`` files per patient anywhere below (``COVID-19 Cases/P001``, ``Sample data/
COVID-19 subjects/P001``...). One sample per series folder: ``path`` is the folder, ``findings`` is
``(Diagnosis,)`` from ``Index.csv`` or, for the unlabelled series that ``Index.csv`` does not list,
from the parent folder name (``Normal``/``CAP``/``COVID-19``).

Label rows: upstream ``Index.csv`` skips ``Label Index`` 43 (42 is followed by 44) while the arrays
have one row per listed series; when the listed indices are not ``0..n-1`` but there are exactly ``n``
rows, the row is the index's rank (as COVIDNet-CT's preprocessing does: indices above 42 minus one).

Slice order (:func:`slice_labels`, positions from :func:`chestlens.io.scan_series`, never file names,
which do not follow slice order): labels follow slices sorted by DECREASING patient z (head first,
which is also InstanceNumber order in P001), i.e. label 0 is the most superior slice. Evidence, P001
(148 slices, z -52.1 to -346.1 mm, 2 mm apart): in that order the RUL-infected labels (57-62) come
before the RML ones (88-92), which sit inside the RLL range (77-124); the reverse order would put the
middle lobe above the upper lobe and RLL-only slices above RUL ones, which is anatomically impossible.
Rendering the slices confirms it: label 60 (z -172 mm, carina level) shows right-lateral and
left-posterior opacities (labelled RUL + LLL), label 110 (z -272 mm, liver dome) a right basal opacity
(labelled RLL only). The upstream readme only says to sort by Slice Location.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from chestlens.data.fields import parse_age, parse_sex
from chestlens.data.records import Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.sources import csv_header, read_table, sample_uid
from chestlens.errors import ChestlensInputError
from chestlens.io import scan_series

SOURCE = "covid_ct_md"
FOLDER = "covid-ct-md"
INDEX = "Index.csv"
INDEX_COLUMNS = ("Label Index", "Diagnosis", "Folder/ID")
SLICE_LABELS = ("Slice-level-labels-updated-1.npy", "Slice-level-labels.npy")
LOBE_LABELS = ("Lobe-level-labels-updated-1.npy", "Lobe-level-labels.npy")
LOBES = ("LLL", "LUL", "RLL", "RML", "RUL")
# Diagnosis from a folder name (lower-case keyword -> Index.csv spelling), for series Index.csv lacks.
FOLDER_DIAGNOSES = (("normal", "Normal"), ("cap", "CAP"), ("covid", "COVID-19"))
_HEADER_TAGS = ["PatientSex", "PatientAge"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SliceLabel:
    """Label of one slice file: ``z_mm`` = patient z (mm, larger is superior), lobe name -> infected."""

    file: Path
    z_mm: float
    infected: bool
    lobes: Mapping[str, bool]


def detect(folder: Path) -> bool:
    """``Index.csv`` with ``Label Index``/``Folder/ID`` columns and a slice-label ``.npy`` beside it."""
    header = set(csv_header(folder / INDEX))
    return {"Label Index", "Folder/ID"} <= header and any((folder / n).is_file() for n in SLICE_LABELS)


def _first_file(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise ChestlensInputError(folder / names[0], "label file not found")


def label_rows(folder: Path) -> dict[str, tuple[int, str]]:
    """Series folder name -> (row in the label arrays, Diagnosis), from ``Index.csv`` (see module doc).

    Raises:
        ChestlensInputError: unreadable ``Index.csv``, a non-integer index, or indices that do not fit the
            label arrays.
    """
    csv_path = folder / INDEX
    table = read_table(csv_path, INDEX_COLUMNS)
    try:
        indices = [int(v) for v in table["Label Index"]]
    except ValueError as exc:
        raise ChestlensInputError(csv_path, f"non-integer Label Index ({exc})") from None
    n_rows = np.load(_first_file(folder, SLICE_LABELS), mmap_mode="r").shape[0]
    if sorted(indices) != list(range(n_rows)):
        if len(set(indices)) != n_rows:
            raise ChestlensInputError(csv_path, f"{len(set(indices))} label indices for {n_rows} label rows")
        rank = {index: position for position, index in enumerate(sorted(indices))}
        indices = [rank[i] for i in indices]
    return {
        name.strip(): (row, diagnosis.strip())
        for name, row, diagnosis in zip(table["Folder/ID"], indices, table["Diagnosis"], strict=True)
    }


def _series_folders(folder: Path) -> list[Path]:
    return sorted({p.parent for p in folder.rglob("*.dcm")})


def _folder_diagnosis(series: Path, root: Path) -> str | None:
    for part in reversed(series.relative_to(root).parts[:-1]):
        for keyword, diagnosis in FOLDER_DIAGNOSES:
            if keyword in part.lower():
                return diagnosis
    return None


def _header(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except (InvalidDicomError, OSError) as exc:
        raise ChestlensInputError(path, f"cannot read DICOM header: {exc}") from None


def _slice_positions(series: Path) -> list[tuple[Path, float]]:
    """``(file, patient z in mm)`` of the one series in ``series``, ascending z (inferior -> superior).

    Raises:
        ChestlensInputError: several series, or slices that cannot be ordered by patient position.
    """
    infos = scan_series(series)
    if len(infos) != 1:
        raise ChestlensInputError(series, f"folder holds {len(infos)} series; slice labels need exactly one")
    info = infos[0]
    if info.positions_mm is None or "ascending patient z" not in info.direction:
        raise ChestlensInputError(
            series, f"slices cannot be ordered along patient z (sorted by {info.sorted_by})"
        )
    return list(zip(info.files, info.positions_mm, strict=True))


def _dataset_root(series: Path) -> Path:
    for candidate in series.parents:
        if (candidate / INDEX).is_file():
            return candidate
    raise ChestlensInputError(series, f"no {INDEX} in any parent folder")


def slice_labels(series: Sample | Path) -> list[SliceLabel]:
    """Slice- and lobe-level labels of a labelled series, matched in slice-location order.

    Args:
        series: a sample of this source or its series folder (``Index.csv`` is found in a parent).

    Returns:
        One :class:`SliceLabel` per ``.dcm`` file, ordered by ascending z (inferior to superior, the
        order of :mod:`chestlens.io` volumes); labels were assigned in descending-z order (module doc).

    Raises:
        ChestlensInputError: the series is not in ``Index.csv``, has more slices than label columns, or
            has infected labels beyond its last slice.
    """
    folder = series.path if isinstance(series, Sample) else Path(series)
    root = _dataset_root(folder)
    rows = label_rows(root)
    if folder.name not in rows:
        raise ChestlensInputError(folder, f"series has no slice labels ({INDEX} does not list {folder.name})")
    row = rows[folder.name][0]
    infected = np.load(_first_file(root, SLICE_LABELS), mmap_mode="r")[row]
    lobes = np.load(_first_file(root, LOBE_LABELS), mmap_mode="r")[row]
    slices = _slice_positions(folder)[::-1]  # label order: superior first
    if len(slices) > infected.shape[0] or infected[len(slices) :].any() or lobes[len(slices) :].any():
        raise ChestlensInputError(
            folder, f"{len(slices)} slices do not fit {infected.shape[0]} label columns"
        )
    labels = [
        SliceLabel(path, z, bool(infected[i]), {lobe: bool(lobes[i, k]) for k, lobe in enumerate(LOBES)})
        for i, (path, z) in enumerate(slices)
    ]
    return labels[::-1]


def load(folder: Path) -> list[Sample]:
    """One sample per series folder with a known diagnosis (unknown ones are skipped, debug log)."""
    rows = label_rows(folder)
    samples = []
    for series in _series_folders(folder):
        row, diagnosis = rows.get(series.name, (None, _folder_diagnosis(series, folder)))
        if diagnosis is None:
            logger.debug("%s: no diagnosis for series %s", folder, series)
            continue
        files = sorted(series.glob("*.dcm"))
        header = _header(files[0])
        extra = {"n_files": str(len(files)), "diagnosis_source": INDEX if row is not None else "folder name"}
        if row is not None:
            extra["label_row"] = str(row)
        samples.append(
            Sample(
                source=SOURCE,
                uid=sample_uid(SOURCE, folder, series),
                path=series,
                patient_id=f"{SOURCE}:{series.name}",
                findings=(diagnosis,),
                modality="ct",
                view="axial",
                sex=parse_sex(str(header.get("PatientSex") or "")),
                age=parse_age(str(header.get("PatientAge") or "")),
                extra=extra,
            )
        )
    return samples


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="ct",
        description="COVID-CT-MD: DICOM CT series (COVID-19 / CAP / normal) with slice and lobe labels",
        detect=detect,
        load=load,
    )
)
