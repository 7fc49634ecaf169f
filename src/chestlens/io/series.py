"""DICOM series from a folder: scan, sort by patient position, check, stack into a volume.

Scanning reads headers only (``stop_before_pixels``), recursively, skipping hidden files. Files are
grouped by Series Instance UID. Within a series the slices are sorted by, in order of preference:

1. ``image_position``: the projection of Image Position (Patient) on the slice normal
   (row direction x column direction of Image Orientation (Patient)), with the normal's sign chosen so
   that its largest component is positive. For axial slices that is ascending patient z, i.e.
   inferior -> superior; for sagittal slices right -> left, for coronal anterior -> posterior;
2. ``slice_location``: ascending Slice Location (when positions or orientations are missing/mixed);
3. ``instance_number``: ascending Instance Number (no spacing can be measured);
4. ``file_name``: nothing else available (reported as a problem).

Never by file name when anything better exists: file names often do not follow slice order.

Problems reported per series (``SeriesInfo.problems``, copied into ``meta.warnings`` on reading):
missing slices (a gap over 1.5x the median spacing), duplicate positions, inconsistent spacing,
mixed orientation, mixed image sizes. Non-image and non-DICOM files are skipped and listed. NaN and
infinite values of the stacked volume are refused or masked by the rule of :mod:`chestlens.io.finite`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from chestlens.errors import ChestlensInputError
from chestlens.io import dicom
from chestlens.io.deid import salted_key
from chestlens.io.finite import mask_non_finite
from chestlens.io.image import ImageMeta, MedicalImage
from chestlens.io.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_VOXELS, check_size

#: A step larger than this times the median spacing means slices are missing.
#: How a gap warning starts (``meta.warnings``): volumes measured across it are wrong.
MISSING_SLICES = "missing slice(s)"
GAP_FACTOR = 1.5
#: Steps smaller than this (mm) are duplicate positions.
DUPLICATE_MM = 1e-3
#: Spacing varying by more than this fraction of the median is inconsistent.
SPACING_TOLERANCE = 0.1
#: Direction cosines differing by more than this are a different orientation.
ORIENTATION_TOLERANCE = 1e-3
_AXIS_DIRECTIONS = (
    "right -> left (ascending patient x)",
    "anterior -> posterior (ascending patient y)",
    "inferior -> superior (ascending patient z)",
)


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """One DICOM series in a folder, from headers only.

    Attributes:
        series_key: salted hash of the Series Instance UID (see :mod:`chestlens.io.deid`); pass it
            to :func:`read_series` to pick this series.
        modality: DICOM Modality of the first slice.
        files: the slice files, sorted (see the module docstring), so slice labels given in
            anatomical order can be matched by index.
        positions_mm: sort coordinate of each file in mm (position along the normal, or Slice
            Location), None when sorted by Instance Number or file name.
        sorted_by: ``image_position``, ``slice_location``, ``instance_number`` or ``file_name``.
        direction: what ascending order means anatomically, in words.
        slice_spacing_mm: median distance between adjacent distinct positions, mm.
        orientation: Image Orientation (Patient) of the first slice (6 direction cosines).
        pixel_spacing_mm: (row, column) spacing of the first slice in mm.
        rows, cols: size of the first slice.
        problems: what is wrong with the series, one sentence each.
        skipped: folder-level note on files that are not DICOM images (same for every series).
    """

    series_key: str | None
    modality: str | None
    files: tuple[Path, ...]
    positions_mm: tuple[float, ...] | None
    sorted_by: str
    direction: str
    slice_spacing_mm: float | None
    orientation: tuple[float, ...] | None
    pixel_spacing_mm: tuple[float, float] | None
    rows: int
    cols: int
    problems: tuple[str, ...]
    skipped: tuple[str, ...]

    @property
    def n_slices(self) -> int:
        return len(self.files)


def visible_files(root: Path) -> list[Path]:
    """Every file under ``root``, recursively and sorted, skipping hidden files and folders."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def scan_series(folder: str | PathLike[str]) -> list[SeriesInfo]:
    """Find and sort every DICOM image series under ``folder``, largest series first.

    Raises:
        ChestlensInputError: not a folder, or no DICOM image in it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ChestlensInputError(root, "not a folder")
    files = visible_files(root)
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    rejected: list[str] = []
    for path in files:
        try:
            ds = dicom.open_dicom(path, str(path), header_only=True)
        except ChestlensInputError as error:
            rejected.append(f"{path.relative_to(root)} ({error.reason})")
            continue
        if "Rows" not in ds or "Columns" not in ds:
            rejected.append(f"{path.relative_to(root)} (no image: {dicom.sop_class_text(ds)})")
            continue
        groups[str(ds.get("SeriesInstanceUID", ""))].append((path, ds))
    if not groups:
        raise ChestlensInputError(root, f"no DICOM images found in the folder ({len(files)} files checked)")
    skipped = (_skipped_note(rejected),) if rejected else ()
    infos = [_series_info(items, skipped) for items in groups.values()]
    return sorted(infos, key=lambda info: (-info.n_slices, info.series_key or ""))


def select_series(
    infos: list[SeriesInfo], series_key: str | None, where: str | None
) -> tuple[SeriesInfo, str | None]:
    """The series asked for (by key) or the largest one, plus a warning when others were ignored."""
    if series_key is None:
        chosen = infos[0]
    else:
        matches = [info for info in infos if info.series_key == series_key]
        if not matches:
            found = ", ".join(f"{info.series_key} ({info.n_slices} files)" for info in infos)
            raise ChestlensInputError(where, f"no series with key {series_key}; found {found}")
        chosen = matches[0]
    others = [info for info in infos if info is not chosen]
    if not others:
        return chosen, None
    ignored = ", ".join(f"{info.series_key} ({info.n_slices} files)" for info in others)
    return chosen, (
        f"folder holds {len(infos)} series; read {chosen.series_key} ({chosen.n_slices} files), "
        f"ignored {ignored}"
    )


def read_series(
    folder: str | PathLike[str],
    *,
    series_key: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> MedicalImage:
    """Read one series of a folder as a volume ``(slices, rows, cols)``, slices sorted as scanned.

    Args:
        folder: folder holding the series (searched recursively).
        series_key: which series (a :attr:`SeriesInfo.series_key`); default the largest.
        max_pixels, max_voxels: size limits checked before decoding.

    Returns:
        HU for CT, else ``[0, 1]`` with the first slice's VOI (see :mod:`chestlens.io.dicom`).
    """
    infos = scan_series(folder)
    info, note = select_series(infos, series_key, str(folder))
    return load_series(
        info, str(folder), notes=(note,) if note else (), max_pixels=max_pixels, max_voxels=max_voxels
    )


def load_series(
    info: SeriesInfo,
    where: str,
    *,
    notes: tuple[str, ...] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> MedicalImage:
    """Decode and stack the slices of a scanned series (see :func:`read_series`)."""
    if any(problem.startswith("mixed image sizes") for problem in info.problems):
        raise ChestlensInputError(where, "series slices have different sizes and cannot be stacked")
    check_size(where, info.rows, info.cols, info.n_slices, max_pixels=max_pixels, max_voxels=max_voxels)
    volume = np.empty((info.n_slices, info.rows, info.cols), dtype=np.float32)
    first = _slice_values(info.files[0], info, volume, 0, max_pixels)
    for index, path in enumerate(info.files[1:], start=1):
        _slice_values(path, info, volume, index, max_pixels)
    volume, finite_notes = mask_non_finite(volume, where)
    presented = dicom.present_grey(volume, first)
    meta = ImageMeta(
        **{
            **dicom.header_fields(first),
            "source_path": where,
            "format": "dicom-series",
            "rows": info.rows,
            "cols": info.cols,
            "pixel_unit": presented.unit,
            "n_frames": info.n_slices,
            "slice_spacing_mm": info.slice_spacing_mm,
            "slice_positions_mm": info.positions_mm,
            "window": presented.window,
            "value_range": (float(volume.min()), float(volume.max())),
            "warnings": (*info.problems, *info.skipped, *notes, *finite_notes),
        }
    )
    return MedicalImage(pixels=presented.pixels, meta=meta)


def _slice_values(path: Path, info: SeriesInfo, volume: np.ndarray, index: int, max_pixels: int) -> Dataset:
    """Decode one slice into ``volume[index]`` (modality values); return its data set."""
    ds = dicom.open_dicom(path, str(path))
    dicom.check_decodable(ds, str(path), max_pixels=max_pixels)
    raw = dicom.decode_pixels(ds, str(path))
    if raw.shape != (info.rows, info.cols):
        raise ChestlensInputError(
            path,
            f"series slice decoded to shape {raw.shape}, expected one grey {info.rows} x {info.cols} frame",
        )
    volume[index] = dicom.modality_values(ds, raw)
    return ds


def _series_info(items: list[tuple[Path, Dataset]], skipped: tuple[str, ...]) -> SeriesInfo:
    datasets = [ds for _, ds in items]
    first = datasets[0]
    problems: list[str] = []
    orientations = [dicom.header_floats(ds, "ImageOrientationPatient", 6) for ds in datasets]
    positions = [dicom.header_floats(ds, "ImagePositionPatient", 3) for ds in datasets]
    locations = [dicom.header_float(ds, "SliceLocation") for ds in datasets]
    numbers = [dicom.header_int(ds, "InstanceNumber") for ds in datasets]
    mixed = _mixed_orientation(orientations)
    if mixed:
        problems.append(f"mixed orientation: {mixed} distinct Image Orientation (Patient) values")
    sizes = sorted({(int(ds.Rows), int(ds.Columns)) for ds in datasets})
    if len(sizes) > 1:
        problems.append(f"mixed image sizes: {', '.join(f'{r}x{c}' for r, c in sizes)}")

    keys, sorted_by, direction, problem = _sort_plan(orientations, positions, locations, numbers, bool(mixed))
    if problem:
        problems.append(problem)
    if keys is not None:
        order = sorted(range(len(items)), key=lambda i: (keys[i], numbers[i] or 0, items[i][0].name))
    elif sorted_by == "instance_number":
        order = sorted(range(len(items)), key=lambda i: (numbers[i] or 0, items[i][0].name))
    else:
        order = list(range(len(items)))  # files were listed in name order
    sorted_keys = None if keys is None else tuple(round(keys[i], 4) for i in order)
    spacing = _spacing_problems(sorted_keys, problems) if sorted_keys else None
    return SeriesInfo(
        series_key=salted_key(first.get("SeriesInstanceUID")),
        modality=dicom.header_text(first, "Modality"),
        files=tuple(items[i][0] for i in order),
        positions_mm=sorted_keys,
        sorted_by=sorted_by,
        direction=direction,
        slice_spacing_mm=spacing,
        orientation=orientations[0],
        pixel_spacing_mm=dicom.pixel_spacing(first),
        rows=int(first.Rows),
        cols=int(first.Columns),
        problems=tuple(problems),
        skipped=skipped,
    )


def _skipped_note(rejected: list[str]) -> str:
    shown = "; ".join(rejected[:3])
    more = f"; and {len(rejected) - 3} more" if len(rejected) > 3 else ""
    return f"skipped {len(rejected)} file(s) that are not DICOM images: {shown}{more}"


def _sort_plan(
    orientations: list[tuple[float, ...] | None],
    positions: list[tuple[float, ...] | None],
    locations: list[float | None],
    numbers: list[int | None],
    mixed: bool,
) -> tuple[list[float] | None, str, str, str | None]:
    """(sort keys or None, sorted_by, direction in words, problem or None); see the module docstring."""
    known_positions = [p for p in positions if p is not None]
    known_orientations = [o for o in orientations if o is not None]
    known_locations = [loc for loc in locations if loc is not None]
    if not mixed and len(known_positions) == len(positions) and len(known_orientations) == len(orientations):
        normal = _normal(known_orientations[0])
        keys = [float(np.dot(position, normal)) for position in known_positions]
        return keys, "image_position", _direction(normal), None
    if len(known_locations) == len(locations):
        return known_locations, "slice_location", "ascending Slice Location", None
    if None not in numbers:
        problem = "no usable slice positions: sorted by Instance Number, spacing unknown"
        return None, "instance_number", "ascending Instance Number", problem
    problem = "no slice positions or instance numbers: sorted by file name, order may be wrong"
    return None, "file_name", "file name", problem


def _normal(orientation: tuple[float, ...]) -> np.ndarray:
    """Unit slice normal, signed so that its largest component is positive."""
    normal = np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:]))
    normal /= np.linalg.norm(normal)
    return normal if normal[np.argmax(np.abs(normal))] > 0 else -normal


def _direction(normal: np.ndarray) -> str:
    return _AXIS_DIRECTIONS[int(np.argmax(np.abs(normal)))]


def _mixed_orientation(orientations: list[tuple[float, ...] | None]) -> int:
    """Number of distinct orientations when there is more than one, else 0."""
    distinct: list[np.ndarray] = []
    for orientation in orientations:
        if orientation is None:
            continue
        vector = np.asarray(orientation)
        if not any(np.allclose(vector, seen, atol=ORIENTATION_TOLERANCE) for seen in distinct):
            distinct.append(vector)
    return len(distinct) if len(distinct) > 1 else 0


def _spacing_problems(positions: tuple[float, ...], problems: list[str]) -> float | None:
    """Median spacing of sorted positions; appends duplicate / gap / inconsistency problems."""
    if len(positions) < 2:
        return None
    steps = np.diff(np.asarray(positions))
    duplicates = np.flatnonzero(steps < DUPLICATE_MM)
    if duplicates.size:
        where = ", ".join(f"{positions[i]:g}" for i in duplicates[:5])
        problems.append(f"{duplicates.size} duplicate slice position(s) at {where} mm")
    distinct = steps[steps >= DUPLICATE_MM]
    if distinct.size == 0:
        return None
    median = float(np.median(distinct))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    for i in gaps[:5]:
        missing = round(steps[i] / median) - 1
        problems.append(
            f"{MISSING_SLICES}: gap of {steps[i]:.3g} mm between positions {positions[i]:g} and "
            f"{positions[i + 1]:g} mm (spacing {median:.3g} mm, about {missing} slice(s) missing)"
        )
    if gaps.size > 5:
        problems.append(f"{gaps.size - 5} more gaps")
    regular = distinct[distinct <= GAP_FACTOR * median]
    if regular.size and float(regular.max() - regular.min()) > SPACING_TOLERANCE * median:
        problems.append(
            f"inconsistent slice spacing: {regular.min():.3g} to {regular.max():.3g} mm "
            f"(median {median:.3g} mm)"
        )
    return median
