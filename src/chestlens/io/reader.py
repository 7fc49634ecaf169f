"""The one entry point: sniff the format from the bytes and dispatch to the right reader."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from chestlens.io.dicom import read_dicom
from chestlens.io.image import MedicalImage
from chestlens.io.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_VOXELS
from chestlens.io.nifti import read_nifti
from chestlens.io.raster import read_raster
from chestlens.io.series import read_series
from chestlens.io.sniff import sniff_format

ImageSource = str | PathLike[str] | bytes


def read_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    name: str | None = None,
    max_side: int | None = None,
) -> MedicalImage:
    """Read any supported image: DICOM file, DICOM series folder, PNG/JPEG/TIFF/BMP, NIfTI.

    Args:
        source: a file path, a folder (read as a DICOM series, the largest series if several), or
            the bytes of a file.
        max_pixels: refuse frames with more pixels than this (checked from the header).
        max_voxels: refuse multi-frame files, series and volumes with more voxels than this.
        name: label for error messages when ``source`` is bytes (e.g. the uploaded file name).
        max_side: pictures (PNG, JPEG, TIFF, BMP) with a longer side above this are shrunk while they
            are read (:mod:`chestlens.io.raster`); None reads them at full size.

    Returns:
        :class:`MedicalImage`; pixel units, ranges and shapes are documented in :mod:`chestlens.io.image`.

    Raises:
        ChestlensInputError: anything chestlens cannot read; the message names the file and reason.
    """
    fmt = sniff_format(source, name=name)
    data: Path | bytes
    if isinstance(source, bytes | bytearray | memoryview):
        data, where = bytes(source), name
    elif fmt == "dicom-series":
        return read_series(source, max_pixels=max_pixels, max_voxels=max_voxels)
    else:
        data, where = Path(source), str(source)
    if fmt == "dicom":
        return read_dicom(data, where=where, max_pixels=max_pixels, max_voxels=max_voxels)
    if fmt == "nifti":
        return read_nifti(data, where=where, max_pixels=max_pixels, max_voxels=max_voxels)
    return read_raster(data, fmt, where=where, max_pixels=max_pixels, max_side=max_side)  # png, jpeg...
