"""COVID-CT-MD (Afshar et al., Scientific Data 2021): DICOM series with slice- and lobe-level labels.

Layout: ``<folder>/Index.csv`` (``Label Index, Diagnosis, Relative Path, Folder/ID``),
``<folder>/Slice-level-labels-updated-1.npy`` (``(n_labelled, 200)``, 1 = slice shows infection),
``<folder>/Lobe-level-labels-updated-1.npy`` (``(n_labelled, 200, 5)``, lobes in :data:`LOBES` order)
and the ``.dcm`` files of each patient anywhere below, one folder per series (``COVID-19 Cases/P001``,
``Sample data/COVID-19 subjects/P001``...). One sample per series folder: ``path`` is the folder,
``patient_id`` is ``covid_ct_md:<name>``, ``findings`` is ``(Diagnosis,)`` from ``Index.csv`` or, for the
series that ``Index.csv`` does not list (normal patients), from the folder names (``Normal``/``CAP``/
``COVID-19``).

Series names (:func:`series_name`): the folder name (``P001``, ``normal002``), unless ``Index.csv``
lists not the folder but the series' DICOM PatientID: the sample data's cap002 lies flat in its class
folder (``Cap subjects/IM0001.dcm``...), PatientID ``cap002``. A PatientID that ``Index.csv`` does not
list never becomes a sample's id.

Label rows: upstream ``Index.csv`` skips ``Label Index`` 43 (42 is followed by 44) while the arrays
have one row per listed series; when the listed indices are not ``0..n-1`` but there are exactly ``n``
rows, the row is the index's rank (as COVIDNet-CT's preprocessing does: indices above 42 minus one).
The images of cap002 (``Label Index`` 56) confirm it, see :func:`label_rows`.

Normal patients have no row (no infection, as the dataset's description says): :func:`slice_labels`
gives them a label of 0 on every slice and lobe, so they count as negative slices. Series that
``Index.csv`` does not list and that are not normal have no slice labels.

Slice order (:func:`slice_labels`, positions from :func:`chestlens.io.scan_series`, never file names,
which do not follow slice order): labels follow slices sorted by DECREASING patient z (head first,
which is also InstanceNumber order in P001), i.e. label 0 is the most superior slice. Evidence, P001
(148 slices, z -52.1 to -346.1 mm, 2 mm apart): in that order the RUL-infected labels (57-62) come
before the RML ones (88-92), which sit inside the RLL range (77-124); the reverse order would put the
middle lobe above the upper lobe and RLL-only slices above RUL ones, which is anatomically impossible.
Rendering the slices confirms it: label 60 (z -172 mm, carina level) shows right-lateral and
left-posterior opacities (labelled RUL + LLL), label 110 (z -272 mm, liver dome) a right basal opacity
(labelled RLL only). The upstream readme only says to sort by Slice Location.

cap002 and normal002 hold UUID strings where DICOM wants UIDs; :func:`chestlens.io.dicom.open_dicom`
reads them without pydicom's per-file warning (which would quote the raw UID).
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
_HEADER_TAGS = ["PatientID", "PatientSex", "PatientAge"]

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
    """Series name -> (row in the label arrays, Diagnosis), from ``Index.csv`` (see module doc).

    Rows of a ``Label Index`` above the gap at 43 are the index's rank, e.g. cap002 (``Label Index`` 56)
    is row 55, not 56. Checked on cap002's 131 slices in label order (module doc), with one number per
    slice: the share of pixels between -700 and -100 HU in the lungs (the mask of
    :mod:`chestlens.pipeline.ct_lungs`, closed by 5 px and hole-filled so that dense lesions count, less a
    3 px rim). It separates row 55's labels (30 slices, 89-118, LLL + RLL) with AUC 0.86, row 56's (15
    slices: 39-44 and 48 RUL, 86-88 and 102-106 RLL) with 0.57; on slices 30-118 alone (no apex, no
    diaphragm partial volume) 0.89 against 0.53. The same number gives P001 AUC 0.86 against its row 0
    (0.57 with the slice order reversed). Rendered slices agree: labels 92-112 show peripheral
    ground-glass opacities in both lower lobes, 39-48 (row 56's RUL slices) clear upper lobes.

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
    """Diagnosis named by the innermost folder (the series folder included) below ``root`` that names one."""
    for part in reversed(series.relative_to(root).parts):
        for keyword, diagnosis in FOLDER_DIAGNOSES:
            if keyword in part.lower():
                return diagnosis
    return None


def _header(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except (InvalidDicomError, OSError) as exc:
        raise ChestlensInputError(path, f"cannot read DICOM header: {exc}") from None


def _series_header(series: Path) -> pydicom.Dataset:
    """Header of the series folder's first ``.dcm`` file (by name)."""
    files = sorted(series.glob("*.dcm"))
    if not files:
        raise ChestlensInputError(series, "no .dcm files in the series folder")
    return _header(files[0])


def series_name(
    series: Path, rows: Mapping[str, tuple[int, str]], header: pydicom.Dataset | None = None
) -> str:
    """Name of a series folder as ``Index.csv`` spells it (module doc: folder name, or a listed PatientID).

    Args:
        series: the series folder.
        rows: :func:`label_rows` of the dataset.
        header: the header of one of its files, read from the folder when not given.
    """
    if series.name in rows:
        return series.name
    header = _series_header(series) if header is None else header
    patient = str(header.get("PatientID") or "").strip()
    return patient if patient in rows else series.name


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
    """Slice- and lobe-level labels of a labelled or normal series, matched in slice-location order.

    Args:
        series: a sample of this source or its series folder (``Index.csv`` is found in a parent).

    Returns:
        One :class:`SliceLabel` per ``.dcm`` file, ordered by ascending z (inferior to superior, the
        order of :mod:`chestlens.io` volumes); labels were assigned in descending-z order (module doc).
        A normal series that ``Index.csv`` does not list gets 0 (no infection) on every slice and lobe.

    Raises:
        ChestlensInputError: the series is neither in ``Index.csv`` nor normal, has more slices than
            label columns, or has infected labels beyond its last slice.
    """
    folder = series.path if isinstance(series, Sample) else Path(series)
    root = _dataset_root(folder)
    rows = label_rows(root)
    name = series_name(folder, rows)
    if name not in rows and _folder_diagnosis(folder, root) != "Normal":
        raise ChestlensInputError(folder, f"series has no slice labels ({INDEX} does not list {name})")
    slices = _slice_positions(folder)[::-1]  # label order: superior first
    if name in rows:
        row = rows[name][0]
        infected = np.load(_first_file(root, SLICE_LABELS), mmap_mode="r")[row]
        lobes = np.load(_first_file(root, LOBE_LABELS), mmap_mode="r")[row]
    else:  # a normal patient: no infection anywhere (module doc)
        infected, lobes = np.zeros(len(slices), bool), np.zeros((len(slices), len(LOBES)), bool)
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
        files = sorted(series.glob("*.dcm"))
        header = _header(files[0])
        name = series_name(series, rows, header)
        row, diagnosis = rows.get(name, (None, _folder_diagnosis(series, folder)))
        if diagnosis is None:
            logger.debug("%s: no diagnosis for series %s", folder, series)
            continue
        extra = {"n_files": str(len(files)), "diagnosis_source": INDEX if row is not None else "folder name"}
        if row is not None:
            extra["label_row"] = str(row)
        samples.append(
            Sample(
                source=SOURCE,
                uid=sample_uid(SOURCE, folder, series),
                path=series,
                patient_id=f"{SOURCE}:{name}",
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
