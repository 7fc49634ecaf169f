"""What ``chestlens predict PATH...`` screens: files, folders (recursively) and DICOM series folders.

A folder whose DICOM files are CT slices is screened as one series (the largest, with a warning, when
it holds several); any other file
with an image extension or a DICOM preamble is screened on its own. Other files (CSV, text...) are
counted, not screened. Hidden files and folders are skipped. A CSV file given as an input is a
manifest: its ``path`` column lists the inputs (files or folders, relative to the CSV's folder).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from chestlens.errors import ChestlensInputError
from chestlens.io.series import visible_files
from chestlens.io.sniff import IMAGE_SUFFIXES, dicom_kind

SERIES_MODALITIES = frozenset({"CT"})


@dataclass(frozen=True, slots=True)
class Inputs:
    """Expanded inputs: ``items`` to screen (files or series folders), in a stable order."""

    items: list[Path]
    not_images: int


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return dicom_kind(handle.read(132)) == "part10"
    except OSError:
        return False


def _is_candidate(path: Path) -> bool:
    if path.name.endswith(".gz") and not path.name.endswith(".nii.gz"):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES or _has_dicom_preamble(path)


def _series_folders(dicoms: list[Path]) -> set[Path]:
    """Folders whose DICOM files are CT slices, two or more (headers of the first and last file only).
    Such a folder is screened as one series; when it holds several series, the series reader takes the
    largest and says in the result's warnings how many were left out (as ``info`` and the service do)."""
    from chestlens.io.dicom import open_dicom

    by_folder: dict[Path, list[Path]] = defaultdict(list)
    for path in dicoms:
        by_folder[path.parent].append(path)
    series = set()
    for folder, files in by_folder.items():
        if len(files) < 2:
            continue
        try:
            heads = [open_dicom(p, str(p), header_only=True) for p in (files[0], files[-1])]
        except ChestlensInputError:
            continue
        if all(head.get("Modality") in SERIES_MODALITIES for head in heads):
            series.add(folder)
    return series


def manifest_paths(manifest: Path) -> list[Path]:
    """The inputs a CSV manifest lists in its ``path`` column (matched case-insensitively), relative to
    the CSV's folder unless absolute; other columns are ignored."""
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ChestlensInputError(manifest, f"cannot read manifest: {error}") from error
    column = next((c for c in (rows[0] if rows else {}) if c and c.strip().lower() == "path"), None)
    if column is None:
        raise ChestlensInputError(manifest, "a manifest needs a 'path' column and at least one row")
    return [manifest.parent / row[column].strip() for row in rows if (row[column] or "").strip()]


def expand_inputs(paths: list[Path]) -> Inputs:
    """Files as given; folders walked recursively, CT series folders kept whole; CSV manifests read."""
    items: list[Path] = []
    not_images = 0
    for root in paths:
        if not root.exists():
            raise ChestlensInputError(root, "no such file or folder")
        if root.is_file() and root.suffix.lower() == ".csv":
            listed = expand_inputs(manifest_paths(root))
            items += listed.items
            not_images += listed.not_images
            continue
        if root.is_file():
            items.append(root)
            continue
        files = visible_files(root)
        candidates = [p for p in files if _is_candidate(p)]
        not_images += len(files) - len(candidates)
        series = _series_folders([p for p in candidates if p.suffix.lower() in {".dcm", ".dicom", ""}])
        items += sorted(series)
        items += [p for p in candidates if p.parent not in series]
    return Inputs(items=list(dict.fromkeys(items)), not_images=not_images)
