"""Image input for chestlens: one entry point for DICOM, DICOM series, PNG/JPEG/TIFF/BMP and NIfTI.

Pixel conventions are documented in :mod:`chestlens.io.image`. In short: float32; radiographs and
pictures in ``[0, 1]`` with air/lungs dark; CT in Hounsfield units; volumes ``(slices, rows, cols)``
from inferior to superior.

Public API::

    read_image(source, *, max_pixels=..., max_voxels=..., name=None) -> MedicalImage
    read_series(folder, *, series_key=None, max_pixels=..., max_voxels=...) -> MedicalImage
    scan_series(folder) -> list[SeriesInfo]
    sniff_format(path_or_bytes) -> str
    describe(path) -> dict
    apply_window(hu, center, width), lung_window(hu), mediastinum_window(hu), WINDOWS
"""

from chestlens.io.describe import describe
from chestlens.io.image import ImageMeta, MedicalImage
from chestlens.io.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_VOXELS
from chestlens.io.reader import read_image
from chestlens.io.series import SeriesInfo, read_series, scan_series
from chestlens.io.sniff import sniff_format
from chestlens.io.windowing import WINDOWS, apply_window, lung_window, mediastinum_window

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_VOXELS",
    "WINDOWS",
    "ImageMeta",
    "MedicalImage",
    "SeriesInfo",
    "apply_window",
    "describe",
    "lung_window",
    "mediastinum_window",
    "read_image",
    "read_series",
    "scan_series",
    "sniff_format",
]
