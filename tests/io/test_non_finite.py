"""NaN and infinite pixel values are handled at read time (:mod:`chestlens.io.finite`), built from the
real pip radiograph RG1_UNCR.dcm and a real COVID-CT-MD slice."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from chestlens.errors import ChestlensInputError
from chestlens.io import read_image
from chestlens.io.finite import MAX_NON_FINITE_FRACTION

pytestmark = pytest.mark.inference

NAN_COLUMNS = slice(100, 110)


def nan_slope_radiograph(pip_dicom) -> bytes:
    """The real CR radiograph RG1_UNCR.dcm with Rescale Slope NaN: every modality value is NaN."""
    ds = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))
    with pydicom.config.disable_value_validation():
        ds.RescaleSlope, ds.RescaleIntercept = "NaN", "0"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _radiograph_values(pip_dicom) -> np.ndarray:
    """RG1_UNCR.dcm's stored values (every 4th row and column), float32, with NaN columns."""
    values = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm")).pixel_array[::4, ::4].astype(np.float32)
    values[:, NAN_COLUMNS] = np.nan
    return values


def float_dicom_with_nan_columns(pip_dicom) -> bytes:
    """RG1_UNCR.dcm stored as 32-bit Float Pixel Data with ten NaN columns."""
    values = _radiograph_values(pip_dicom)
    ds = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))
    del ds.PixelData, ds.PixelRepresentation
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit = 31
    ds.FloatPixelData = values.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_nan_rescale_slope_is_a_clear_error_naming_the_file(pip_dicom):
    with pytest.raises(ChestlensInputError, match=r"nan\.dcm: 100% of the pixel values are NaN or infinite"):
        read_image(nan_slope_radiograph(pip_dicom), name="nan.dcm")


def test_float_dicom_nan_columns_are_masked_with_a_warning(pip_dicom):
    image = read_image(float_dicom_with_nan_columns(pip_dicom), name="float.dcm")
    assert np.isfinite(image.pixels).all() and 0.0 <= image.pixels.min() < image.pixels.max() <= 1.0
    (warning,) = image.meta.warnings
    assert "4,890 pixel value(s)" in warning and "NaN or infinite" in warning
    assert all(np.isfinite(image.meta.value_range))
    # MONOCHROME1: the masked columns take the smallest value, shown as the brightest
    assert (image.pixels[:, NAN_COLUMNS] == image.pixels.max()).all()


def test_float_tiff_nan_columns_are_masked_not_normalised_to_nan(pip_dicom, tmp_path):
    path = tmp_path / "float.tiff"
    Image.fromarray(_radiograph_values(pip_dicom), mode="F").save(path)
    image = read_image(path)
    assert image.meta.source_mode == "F" and np.isfinite(image.pixels).all()
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0
    assert (image.pixels[:, NAN_COLUMNS] == 0.0).all()
    assert "NaN or infinite" in image.meta.warnings[0]


def test_mostly_infinite_tiff_is_refused(pip_dicom, tmp_path):
    values = _radiograph_values(pip_dicom)
    values[:, : int(values.shape[1] * (MAX_NON_FINITE_FRACTION + 0.1))] = np.inf
    path = tmp_path / "inf.tiff"
    Image.fromarray(values, mode="F").save(path)
    with pytest.raises(ChestlensInputError, match=r"inf\.tiff: .*% of the pixel values are NaN or infinite"):
        read_image(path)


def test_ct_nifti_with_a_nan_patch_keeps_hounsfield_units(covid_dir, tmp_path):
    hu = read_image(sorted(covid_dir.glob("*.dcm"))[0]).pixels  # one real COVID-CT-MD slice
    volume = np.repeat(hu.T[..., None], 2, axis=2).astype(np.float32)  # two (i, j) slices
    volume[40:60, 40:60, 0] = np.nan
    path: Path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    image = read_image(path)
    assert image.meta.pixel_unit == "HU" and np.isfinite(image.pixels).all()
    assert image.pixels.min() == pytest.approx(float(hu.min()))
    assert "400 pixel value(s)" in image.meta.warnings[0]


def test_series_with_one_nan_slice_is_masked(covid_dir, tmp_path):
    for index, path in enumerate(sorted(covid_dir.glob("*.dcm"))[:4]):
        ds = pydicom.dcmread(path)
        if index == 0:
            with pydicom.config.disable_value_validation():
                ds.RescaleSlope = "NaN"
        ds.save_as(tmp_path / path.name)
    image = read_image(tmp_path)
    assert image.meta.format == "dicom-series" and np.isfinite(image.pixels).all()
    assert "(25%) were NaN or infinite" in image.meta.warnings[-1]
