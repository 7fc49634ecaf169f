"""NIfTI: canonical orientation checked with NIfTI files written from the real COVID-CT-MD series."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from chestlens.errors import ChestlensInputError
from chestlens.io import read_image

pytestmark = pytest.mark.inference

FIRST, LAST = 50, 90  # a block of 40 real CT slices with lungs, heart and spine


@pytest.fixture(scope="module")
def ct_block(covid_volume, covid_scan):
    """(HU volume (slices, rows, cols), RAS affine) of the block, as a DICOM-to-NIfTI converter writes it."""
    volume = covid_volume.pixels[FIRST:LAST]
    header = pydicom.dcmread(covid_scan[0].files[FIRST], stop_before_pixels=True)
    row_cosine = np.array(header.ImageOrientationPatient[:3], dtype=float)  # along a row (column index)
    col_cosine = np.array(header.ImageOrientationPatient[3:], dtype=float)  # down a column (row index)
    normal = np.cross(row_cosine, col_cosine)
    dr, dc = (float(v) for v in header.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = row_cosine * dc  # voxel axis i = DICOM column index
    lps[:3, 1] = col_cosine * dr  # voxel axis j = DICOM row index
    lps[:3, 2] = normal * covid_volume.meta.slice_spacing_mm  # voxel axis k = slice index
    lps[:3, 3] = np.array(header.ImagePositionPatient, dtype=float)
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return volume, ras


def _write(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(np.round(data).astype(np.int16), affine), path)
    return path


def test_round_trip_reproduces_the_dicom_volume(ct_block, covid_volume, tmp_path):
    volume, affine = ct_block
    image = read_image(_write(volume.transpose(2, 1, 0), affine, tmp_path / "ct.nii"))
    assert image.meta.format == "nifti" and image.meta.pixel_unit == "HU"
    np.testing.assert_array_equal(image.pixels, volume)
    assert image.meta.pixel_spacing_mm == pytest.approx(covid_volume.meta.pixel_spacing_mm)
    assert image.meta.slice_spacing_mm == pytest.approx(2.0)
    assert image.meta.orientation == pytest.approx((1, 0, 0, 0, 1, 0))
    assert image.meta.slice_positions_mm == pytest.approx(covid_volume.meta.slice_positions_mm[FIRST:LAST])


def test_any_storage_orientation_gives_the_same_array(ct_block, tmp_path):
    volume, affine = ct_block
    stored = volume.transpose(2, 1, 0)  # (i, j, k) as in the DICOM
    # 1) axes permuted to (k, i, j) with the affine's columns permuted alike
    permuted = _write(stored.transpose(2, 0, 1), affine[:, [2, 0, 1, 3]], tmp_path / "permuted.nii")
    # 2) j axis flipped: the first voxel is now the last row, the affine moves and turns accordingly
    flipped_affine = affine.copy()
    flipped_affine[:3, 3] = affine[:3, 3] + affine[:3, 1] * (stored.shape[1] - 1)
    flipped_affine[:3, 1] = -affine[:3, 1]
    flipped = _write(stored[:, ::-1, :], flipped_affine, tmp_path / "flipped.nii")
    for path in (permuted, flipped):
        np.testing.assert_array_equal(read_image(path).pixels, volume, err_msg=path.name)


def test_patient_back_is_at_the_bottom_and_feet_first(ct_block, tmp_path):
    volume, affine = ct_block
    image = read_image(_write(volume.transpose(2, 1, 0), affine, tmp_path / "ct.nii"))
    hu = image.pixels
    middle = hu[hu.shape[0] // 2]
    # the spine (bone near the midline) lies in the posterior (lower) half of the image
    rows, _ = np.nonzero(middle[:, 216:296] > 300)
    assert rows.mean() > middle.shape[0] / 2
    # the anterior chest wall starts higher than the body's posterior edge sits below the centre
    body_rows = np.nonzero((middle > -300).any(axis=1))[0]
    assert body_rows.min() < 256 < body_rows.max()
    # slices ascend: positions increase from inferior to superior
    assert np.all(np.diff(image.meta.slice_positions_mm) > 0)


def test_gzip_nifti_and_bytes(ct_block, tmp_path):
    volume, affine = ct_block
    small = np.round(volume[:4]).astype(np.int16).transpose(2, 1, 0)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(small, affine), path)
    from_file = read_image(path)
    np.testing.assert_array_equal(from_file.pixels, volume[:4])
    from_bytes = read_image(path.read_bytes(), name="upload.nii.gz")
    np.testing.assert_array_equal(from_bytes.pixels, from_file.pixels)
    renamed = tmp_path / "volume.dat"  # extension says nothing
    renamed.write_bytes(gzip.decompress(path.read_bytes()))
    np.testing.assert_array_equal(read_image(renamed).pixels, from_file.pixels)


def test_two_d_and_non_ct_nifti(tmp_path):
    plane = np.arange(12, dtype=np.float32).reshape(4, 3)  # i (R) x j (A)
    image = read_image(_write(plane, np.eye(4), tmp_path / "plane.nii"))
    assert image.pixels.shape == (3, 4)  # rows along A, cols along R
    assert image.meta.pixel_unit == "unit"
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0
    # row 0 is the most anterior (largest j), column 0 the patient's right (largest i)
    assert image.pixels[0, 0] == 1.0 and image.pixels[-1, -1] == 0.0


def test_trailing_singleton_axis_is_allowed_but_4d_is_not(tmp_path):
    ok = read_image(_write(np.full((4, 4, 3, 1), -1000.0), np.eye(4), tmp_path / "single_frame.nii"))
    assert ok.pixels.shape == (3, 4, 4) and ok.meta.pixel_unit == "HU"
    four_d = _write(np.zeros((4, 4, 3, 2)), np.eye(4), tmp_path / "time.nii")
    with pytest.raises(ChestlensInputError, match=r"time.nii: 4-D NIfTI .* not supported"):
        read_image(four_d)


def test_voxel_limit_from_the_header(tmp_path):
    path = _write(np.zeros((8, 8, 8)), np.eye(4), tmp_path / "cube.nii")
    with pytest.raises(ChestlensInputError, match=r"cube\.nii: .*limit of 100 voxels"):
        read_image(path, max_voxels=100)


def test_default_voxel_limit_is_a_memory_budget(tmp_path):
    """A 400 MB-claiming header in a file of a few hundred bytes is refused before any data is read."""
    import nibabel as nib

    from chestlens.io.limits import DEFAULT_DECODE_BUDGET, DEFAULT_MAX_VOXELS, PEAK_BYTES_PER_VOXEL

    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((1000, 1000, 400))  # 4e8 voxels: about 4.5 GiB to decode
    path = tmp_path / "claims.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4)
    assert DEFAULT_MAX_VOXELS * PEAK_BYTES_PER_VOXEL <= DEFAULT_DECODE_BUDGET
    with pytest.raises(ChestlensInputError, match=r"claims\.nii: .*about 4\.5 GiB"):
        read_image(path)
    assert path.stat().st_size < 400
