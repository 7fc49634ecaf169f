"""The image object every chestlens reader returns.

Pixel conventions (the same for every format, so downstream code never asks where an image came from):

* ``pixels`` is always ``float32`` and always finite: NaN and infinite source values are refused or
  masked at read time, by the one rule of :mod:`chestlens.io.finite` (masking adds a ``meta.warnings`` entry).
* Projection radiographs and ordinary pictures (``pixel_unit == "unit"``): values in ``[0, 1]``,
  0 = darkest, 1 = brightest *as a radiologist views it*: air and lungs dark, bone bright.
  MONOCHROME1 DICOM is inverted to get there; VOI LUT or window centre/width is applied when present,
  otherwise the minimum and maximum of the data are mapped to 0 and 1.
* CT (``pixel_unit == "HU"``): Hounsfield units after rescale slope/intercept, unwindowed
  (air about -1000, water 0). Use :mod:`chestlens.io.windowing` to map HU to ``[0, 1]``.
* Shapes: ``(rows, cols)`` for one 2-D image; ``(frames, rows, cols)`` for multi-frame files and
  ``(slices, rows, cols)`` for CT series and volumes, slices ordered from inferior to superior
  (ascending patient z) for series.
* Colour inputs are converted to grey (ITU-R BT.601 luma); ``meta.is_colour`` records whether the
  source held real colour (a photograph rather than a grey image stored as RGB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

PixelUnit = Literal["unit", "HU"]
SourceFormat = Literal["dicom", "dicom-series", "png", "jpeg", "tiff", "bmp", "nifti"]


@dataclass(frozen=True, slots=True)
class ImageMeta:
    """What chestlens knows about an image, with patient identity reduced to salted hashes.

    Units: ``pixel_spacing_mm`` is (row spacing, column spacing) in millimetres, i.e. the physical
    distance between the centres of adjacent rows and adjacent columns; ``slice_spacing_mm`` is
    the distance between adjacent slice centres in millimetres. ``window`` is (centre, width) in
    the pixel unit of the source before chestlens normalisation (HU for CT).
    """

    source_path: str | None
    format: SourceFormat
    rows: int
    cols: int
    pixel_unit: PixelUnit
    n_frames: int = 1
    modality: str | None = None  # DICOM Modality (CR, DX, CT, MR, US, OT...) or None for pictures
    photometric_interpretation: str | None = None  # as stored (MONOCHROME1, MONOCHROME2, RGB, ...)
    transfer_syntax_uid: str | None = None
    transfer_syntax_name: str | None = None
    bits_stored: int | None = None
    bits_allocated: int | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    slice_spacing_mm: float | None = None
    slice_thickness_mm: float | None = None
    window: tuple[float, float] | None = None
    view: str | None = None  # ViewPosition (PA, AP, LL...) where known
    body_part: str | None = None  # BodyPartExamined where known
    is_colour: bool = False
    source_mode: str | None = None  # raster mode (L, I;16, RGB, RGBA, P...) or DICOM samples layout
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient (6 direction cosines)
    slice_positions_mm: tuple[float, ...] | None = None  # patient z of each slice, series only
    patient_key: str | None = None  # salted hash of PatientID, never the id itself
    study_key: str | None = None  # salted hash of StudyInstanceUID
    series_key: str | None = None  # salted hash of SeriesInstanceUID
    value_range: tuple[float, float] | None = None  # (min, max) of the raw modality values
    warnings: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class MedicalImage:
    """Pixels plus metadata. See the module docstring for units, ranges and shapes."""

    pixels: np.ndarray
    meta: ImageMeta

    @property
    def is_volume(self) -> bool:
        """True for CT series, multi-frame files and 3-D NIfTI (``pixels.ndim == 3``)."""
        return self.pixels.ndim == 3

    @property
    def path(self) -> Path | None:
        return None if self.meta.source_path is None else Path(self.meta.source_path)
