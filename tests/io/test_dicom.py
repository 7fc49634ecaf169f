"""DICOM files on real data: pydicom / pydicom-data bundled files and the shared dicom-samples."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from chestlens.io import read_image

pytestmark = pytest.mark.inference


def _region(pixels: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> float:
    """Mean of a region given as fractions of the image height and width."""
    r, c = pixels.shape
    return float(pixels[int(rows[0] * r) : int(rows[1] * r), int(cols[0] * c) : int(cols[1] * c)].mean())


@pytest.fixture(scope="module")
def rg1_uncr(pip_dicom):
    return read_image(pip_dicom("RG1_UNCR.dcm"))


def test_ct_small_is_hounsfield(pip_dicom):
    path = pip_dicom("CT_small.dcm")
    image = read_image(path)
    hu = image.pixels
    assert image.meta.pixel_unit == "HU"
    assert hu.dtype == np.float32 and hu.shape == (128, 128)
    stored = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(hu, stored.astype(np.float32) - 1024)  # slope 1, intercept -1024
    assert image.meta.value_range == (-896.0, 1167.0)
    # the crop shows lungs in its upper corners, the spinal canal in the middle and bone around it
    assert _region(hu, (0, 0.15), (0, 0.15)) < -700
    assert _region(hu, (0, 0.15), (0.85, 1)) < -700
    assert -100 < float(hu[50:60, 55:65].mean()) < 100
    assert hu.max() > 1000
    assert image.meta.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))
    assert image.meta.modality == "CT"
    assert image.meta.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def test_shared_ct_small_equals_the_pip_copy(shared_data, pip_dicom):
    shared = read_image(shared_data / "dicom-samples" / "CT_small.dcm")
    np.testing.assert_array_equal(shared.pixels, read_image(pip_dicom("CT_small.dcm")).pixels)


def test_rg1_monochrome1_lungs_darker_than_spine(rg1_uncr):
    meta, pixels = rg1_uncr.meta, rg1_uncr.pixels
    assert meta.photometric_interpretation == "MONOCHROME1"
    assert meta.pixel_unit == "unit" and pixels.dtype == np.float32
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert meta.window == (15000.0, 30000.0)
    assert (meta.view, meta.body_part, meta.modality) == ("PA", "CHEST", "CR")
    assert meta.pixel_spacing_mm is None  # the file stores 0\0
    spine = _region(pixels, (0.3, 0.6), (0.46, 0.54))
    right_lung = _region(pixels, (0.3, 0.5), (0.2, 0.35))
    left_lung = _region(pixels, (0.3, 0.5), (0.62, 0.78))
    assert right_lung < spine - 0.15
    assert left_lung < spine - 0.15


def test_rg1_three_transfer_syntaxes_agree(rg1_uncr, pip_dicom):
    lossless = read_image(pip_dicom("RG1_J2KR.dcm"))
    lossy = read_image(pip_dicom("RG1_J2KI.dcm"))
    assert lossless.meta.transfer_syntax_uid == "1.2.840.10008.1.2.4.90"
    assert lossy.meta.transfer_syntax_uid == "1.2.840.10008.1.2.4.91"
    np.testing.assert_array_equal(lossless.pixels, rg1_uncr.pixels)
    difference = np.abs(lossy.pixels - rg1_uncr.pixels)
    assert difference.mean() < 0.005 and difference.max() < 0.05


def test_shared_rg1_j2ki_monochrome1(shared_data, rg1_uncr):
    image = read_image(shared_data / "dicom-samples" / "RG1_J2KI.dcm")
    assert image.meta.photometric_interpretation == "MONOCHROME1"
    spine = _region(image.pixels, (0.3, 0.6), (0.46, 0.54))
    assert _region(image.pixels, (0.3, 0.5), (0.2, 0.35)) < spine - 0.15
    assert _region(image.pixels, (0.3, 0.5), (0.62, 0.78)) < spine - 0.15
    assert float(np.abs(image.pixels - rg1_uncr.pixels).mean()) < 0.005


def test_rg3_leg_radiograph(pip_dicom):
    image = read_image(pip_dicom("RG3_UNCR.dcm"))
    assert image.pixels.shape == (1760, 1760)
    assert image.meta.body_part == "EXTREMITY"
    assert image.meta.window == (550.0, 1024.0)
    # after MONOCHROME1 inversion: direct exposure beside the leg is dark, the tibia bright,
    # and the collimator shutters at the sides (no exposure) white
    beside_leg = _region(image.pixels, (0.22, 0.34), (0.28, 0.36))
    tibia = _region(image.pixels, (0.22, 0.34), (0.46, 0.52))
    shutter = _region(image.pixels, (0.22, 0.34), (0.0, 0.15))
    assert beside_leg < 0.15
    assert tibia > beside_leg + 0.4
    assert shutter > 0.95


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb.dcm",
        "SC_rgb_16bit.dcm",
        "SC_rgb_32bit.dcm",
        "SC_ybr_full_uncompressed.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
    ],
)
def test_rgb_secondary_captures_are_colour(pip_dicom, name):
    image = read_image(pip_dicom(name))
    assert image.meta.is_colour
    assert image.pixels.shape == (100, 100)
    assert image.pixels.dtype == np.float32
    assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0


def test_rgb_encodings_give_the_same_grey(pip_dicom):
    reference = read_image(pip_dicom("SC_rgb.dcm")).pixels
    for name in (
        "SC_rgb_16bit.dcm",
        "SC_ybr_full_uncompressed.dcm",
        "SC_rgb_rle.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
    ):
        np.testing.assert_allclose(read_image(pip_dicom(name)).pixels, reference, atol=2 / 255, err_msg=name)
    lossy = read_image(pip_dicom("SC_rgb_jpeg_dcmtk.dcm")).pixels
    assert float(np.abs(lossy - reference).mean()) < 0.02


def test_palette_colour(pip_dicom):
    image = read_image(pip_dicom("OT-PAL-8-face.dcm"))  # no preamble, PALETTE COLOR
    assert image.meta.photometric_interpretation == "PALETTE COLOR"
    assert image.pixels.shape == (480, 640)
    assert image.meta.is_colour


@pytest.mark.parametrize(
    ("name", "frames"), [("SC_rgb_2frame.dcm", 2), ("SC_rgb_rle_2frame.dcm", 2), ("emri_small.dcm", 10)]
)
def test_multi_frame_gives_3d(pip_dicom, name, frames):
    image = read_image(pip_dicom(name))
    assert image.is_volume
    assert image.pixels.shape[0] == frames == image.meta.n_frames


@pytest.mark.parametrize(
    ("compressed", "reference"),
    [
        ("MR_small_RLE.dcm", "MR_small.dcm"),  # RLE Lossless
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless
        ("MR_small_jp2klossless.dcm", "MR_small.dcm"),  # JPEG 2000 lossless
        ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),
        ("JPEG-LL.dcm", None),  # JPEG Lossless process 14
        ("JPGExtended.dcm", None),  # JPEG extended 12-bit
        ("SC_rgb_jpeg.dcm", None),  # JPEG baseline
    ],
)
def test_compressed_transfer_syntaxes_decode(pip_dicom, compressed, reference):
    image = read_image(pip_dicom(compressed))
    assert np.isfinite(image.pixels).all()
    assert image.pixels.std() > 0
    if reference is not None:
        np.testing.assert_array_equal(image.pixels, read_image(pip_dicom(reference)).pixels)


def test_mr_window_is_applied_into_unit_range(pip_dicom):
    image = read_image(pip_dicom("MR_small.dcm"))  # WC 600 / WW 1600
    raw = pydicom.dcmread(pip_dicom("MR_small.dcm")).pixel_array.astype(np.float64)
    expected = np.clip((raw - (600 - 0.5)) / (1600 - 1) + 0.5, 0, 1)  # DICOM LINEAR window
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)


def test_voi_lut_sequence_is_normalised(pip_dicom):
    image = read_image(pip_dicom("vlut_04.dcm"))
    assert image.meta.window is None  # a LUT, not a window
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0


def test_no_window_uses_data_min_max(pip_dicom):
    image = read_image(pip_dicom("JPEG-LL.dcm"))  # NM without window
    low, high = image.meta.value_range
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0
    assert image.meta.window == ((low + high) / 2, high - low)


def test_bytes_input_matches_path_input(pip_dicom):
    path = pip_dicom("CT_small.dcm")
    from_bytes = read_image(path.read_bytes(), name="upload.dcm")
    np.testing.assert_array_equal(from_bytes.pixels, read_image(path).pixels)
    assert from_bytes.meta.source_path == "upload.dcm"
