"""What chestlens reads from a file or series folder, as a JSON-able dict (``chestlens info``).

Only de-identified data: no patient name, id or birth date is ever read into the result (patient,
study and series appear as salted keys, see :mod:`chestlens.io.deid`).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from chestlens.io.image import MedicalImage
from chestlens.io.reader import read_image
from chestlens.io.series import SeriesInfo, load_series, scan_series, select_series
from chestlens.io.sniff import sniff_format


def describe(path: str | PathLike[str]) -> dict[str, Any]:
    """Read ``path`` (file or DICOM series folder) and summarise it.

    Keys: ``path``, ``format``, ``transfer_syntax`` ({uid, name} or None), ``modality``,
    ``photometric_interpretation``, ``rows``, ``cols``, ``frames``, ``shape``, ``bits_stored``,
    ``bits_allocated``, ``pixel_unit``, ``pixel_spacing_mm``, ``slice_spacing_mm``,
    ``slice_thickness_mm``, ``window`` ({center, width} or None), ``view``, ``body_part``,
    ``is_colour``, ``source_mode``, ``value_range`` ({min, max, unit}: HU for CT, else the stored
    values before normalisation), ``pixel_range`` (of the returned float32 pixels), ``keys``
    (salted patient/study/series keys), ``warnings``; plus ``series`` for folders (slice count,
    sort key, direction, first/last position, problems, number of series in the folder) and
    ``file_size_bytes`` for files.

    Raises:
        ChestlensInputError: as :func:`chestlens.io.read_image`.
    """
    source = Path(path)
    if sniff_format(source) == "dicom-series":
        infos = scan_series(source)
        info, note = select_series(infos, None, str(source))
        image = load_series(info, str(source), notes=(note,) if note else ())
        result = _summary(source, image)
        result["series"] = _series_summary(info, len(infos))
        return result
    result = _summary(source, read_image(source))
    result["file_size_bytes"] = source.stat().st_size
    return result


def _summary(path: Path, image: MedicalImage) -> dict[str, Any]:
    meta = image.meta
    pixels = image.pixels
    return {
        "path": str(path),
        "format": meta.format,
        "transfer_syntax": (
            None
            if meta.transfer_syntax_uid is None
            else {"uid": meta.transfer_syntax_uid, "name": meta.transfer_syntax_name}
        ),
        "modality": meta.modality,
        "photometric_interpretation": meta.photometric_interpretation,
        "rows": meta.rows,
        "cols": meta.cols,
        "frames": meta.n_frames,
        "shape": list(pixels.shape),
        "bits_stored": meta.bits_stored,
        "bits_allocated": meta.bits_allocated,
        "pixel_unit": meta.pixel_unit,
        "pixel_spacing_mm": None if meta.pixel_spacing_mm is None else list(meta.pixel_spacing_mm),
        "slice_spacing_mm": meta.slice_spacing_mm,
        "slice_thickness_mm": meta.slice_thickness_mm,
        "window": None if meta.window is None else {"center": meta.window[0], "width": meta.window[1]},
        "view": meta.view,
        "body_part": meta.body_part,
        "is_colour": meta.is_colour,
        "source_mode": meta.source_mode,
        "value_range": (
            None
            if meta.value_range is None
            else {
                "min": meta.value_range[0],
                "max": meta.value_range[1],
                "unit": "HU" if meta.pixel_unit == "HU" else "stored value",
            }
        ),
        "pixel_range": [float(np.min(pixels)), float(np.max(pixels))],
        "keys": {"patient": meta.patient_key, "study": meta.study_key, "series": meta.series_key},
        "warnings": list(meta.warnings),
    }


def _series_summary(info: SeriesInfo, series_in_folder: int) -> dict[str, Any]:
    positions = info.positions_mm
    return {
        "slice_count": info.n_slices,
        "sorted_by": info.sorted_by,
        "direction": info.direction,
        "first_position_mm": None if not positions else positions[0],
        "last_position_mm": None if not positions else positions[-1],
        "slice_spacing_mm": info.slice_spacing_mm,
        "orientation": None if info.orientation is None else list(info.orientation),
        "problems": list(info.problems),
        "series_in_folder": series_in_folder,
    }
