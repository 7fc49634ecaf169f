"""NIfTI-1 / NIfTI-2 volumes (nibabel) to :class:`MedicalImage`, in one documented orientation.

Orientation: the image is first reoriented to the closest canonical RAS+ orientation
(``nibabel.as_closest_canonical``: voxel axes i, j, k increase towards patient Right, Anterior,
Superior). The output array is then laid out like a DICOM axial series shown the radiological way:

* ``pixels[s, r, c]`` with ``s`` along S (slice 0 = most inferior, as chestlens series are),
* ``r`` (rows) from anterior (row 0, top of the image) to posterior (last row: the patient's back,
  the CT table),
* ``c`` (columns) from the patient's right (column 0, shown on the viewer's left) to the patient's left.

That is ``pixels = canonical[::-1, ::-1, :].transpose(2, 1, 0)``, i.e. exactly the layout of a DICOM
axial series with Image Orientation (Patient) ``1\\0\\0\\0\\1\\0``. 2-D NIfTI gives ``(rows, cols)`` the same
way. A 4-D file is refused unless its extra axes have length 1.

Metadata: ``pixel_spacing_mm`` = (row spacing = A voxel size, column spacing = R voxel size),
``slice_spacing_mm`` = S voxel size, ``orientation`` = the row and column direction cosines in DICOM
LPS terms, ``slice_positions_mm`` = patient z of the first pixel of each slice.

Units: when the data look like CT (smallest value <= :data:`HU_MIN_THRESHOLD`, i.e. air at about
-1000 HU is present) the values are kept as Hounsfield units (``pixel_unit == "HU"``) after the NIfTI
scale slope/intercept; otherwise they are min-max normalised to ``[0, 1]`` (``"unit"``). NaN and
infinite voxels are refused or masked first, by the rule of :mod:`chestlens.io.finite`.

The format is taken from the bytes, not the extension (``.nii``, ``.nii.gz`` or anything else).
"""

from __future__ import annotations

import gzip
import io
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from chestlens.errors import ChestlensInputError
from chestlens.io.finite import mask_non_finite
from chestlens.io.image import ImageMeta, MedicalImage
from chestlens.io.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_VOXELS, check_size

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

#: Data whose minimum is at or below this are treated as Hounsfield units.
HU_MIN_THRESHOLD = -900.0
_LPS_FROM_RAS = np.array([-1.0, -1.0, 1.0])


def read_nifti(
    source: Path | bytes,
    *,
    where: str | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> MedicalImage:
    """Read a NIfTI file or its bytes (plain or gzip). Shapes and units: see the module docstring."""
    import nibabel as nib  # heavy; only needed here

    with ExitStack() as stack:
        stream = _open_stream(source, stack)
        image = _load(stream, where)
        shape = tuple(int(n) for n in image.header.get_data_shape())
        spatial = _spatial_shape(shape, where)
        frames = spatial[2] if len(spatial) == 3 else 1
        check_size(where, spatial[1], spatial[0], frames, max_pixels=max_pixels, max_voxels=max_voxels)
        try:
            canonical = nib.as_closest_canonical(image)
            data = np.asarray(canonical.get_fdata(dtype=np.float32))
            data = data.reshape(data.shape[: len(spatial)])  # drop trailing length-1 axes
        except (ValueError, TypeError, OSError, EOFError, nib.spatialimages.ImageDataError) as error:
            raise ChestlensInputError(where, f"cannot read NIfTI data ({error})") from error
    data, notes = mask_non_finite(data, where)
    affine = canonical.affine
    # voxel sizes are float32 in the header: round away the binary noise (0.7 -> 0.699999988)
    zooms = [round(float(z), 6) for z in canonical.header.get_zooms()[: len(spatial)]]
    pixels = data[::-1, ::-1].T if data.ndim == 2 else data[::-1, ::-1, :].transpose(2, 1, 0)
    low, high = float(np.min(pixels)), float(np.max(pixels))
    is_hu = low <= HU_MIN_THRESHOLD
    if not is_hu:
        pixels = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    rows, cols = pixels.shape[-2:]
    meta = ImageMeta(
        source_path=where,
        format="nifti",
        rows=int(rows),
        cols=int(cols),
        pixel_unit="HU" if is_hu else "unit",
        n_frames=frames,
        pixel_spacing_mm=(zooms[1], zooms[0]),
        slice_spacing_mm=zooms[2] if len(zooms) == 3 else None,
        orientation=_orientation(affine),
        slice_positions_mm=_slice_positions(affine, data.shape) if data.ndim == 3 else None,
        value_range=(low, high),
        bits_stored=int(image.header.get_data_dtype().itemsize * 8),
        source_mode=str(image.header.get_data_dtype()),
        warnings=notes,
    )
    return MedicalImage(pixels=np.ascontiguousarray(pixels, dtype=np.float32), meta=meta)


def _open_stream(source: Path | bytes, stack: ExitStack) -> IO[bytes]:
    """A readable stream of the (decompressed) NIfTI bytes, closed with ``stack``."""
    opened = io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")
    raw: IO[bytes] = stack.enter_context(opened)
    is_gzip = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    return stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb")) if is_gzip else raw


def _load(stream: IO[bytes], where: str | None) -> SpatialImage:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    failures = []
    for image_class in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            stream.seek(0)
            return image_class.from_stream(stream)
        except (ImageFileError, HeaderDataError, ValueError, OSError, EOFError) as error:
            failures.append(f"{image_class.__name__}: {error}")
    raise ChestlensInputError(where, f"not a readable NIfTI file ({'; '.join(failures)})")


def _spatial_shape(shape: tuple[int, ...], where: str | None) -> tuple[int, ...]:
    """Drop trailing length-1 axes beyond the third; refuse 1-D and real 4-D+ data."""
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) > 3:
        raise ChestlensInputError(
            where, f"{len(dims)}-D NIfTI (shape {tuple(shape)}) is not supported; give one 3-D volume"
        )
    if len(dims) < 2:
        raise ChestlensInputError(where, f"NIfTI of shape {tuple(shape)} is not an image")
    return tuple(dims)


def _orientation(affine: np.ndarray) -> tuple[float, ...]:
    """DICOM-style (row direction, column direction) cosines in LPS for the output layout."""
    along_row = -affine[:3, 0] * _LPS_FROM_RAS  # column index increases: towards patient left
    along_col = -affine[:3, 1] * _LPS_FROM_RAS  # row index increases: towards posterior
    cosines = [v / np.linalg.norm(v) for v in (along_row, along_col)]
    return tuple(round(float(x), 6) for x in np.concatenate(cosines))


def _slice_positions(affine: np.ndarray, canonical_shape: tuple[int, ...]) -> tuple[float, ...]:
    """Patient z (mm) of the first output pixel (canonical voxel ``(I-1, J-1, k)``) of every slice."""
    n_i, n_j, n_k = canonical_shape
    voxels = np.stack([np.full(n_k, n_i - 1), np.full(n_k, n_j - 1), np.arange(n_k), np.ones(n_k)])
    return tuple(round(float(z), 4) for z in (affine @ voxels)[2])
