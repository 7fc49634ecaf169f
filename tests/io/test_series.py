"""DICOM series: the real COVID-CT-MD P001 series (JPEG Lossless, file names out of slice order)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from chestlens.errors import ChestlensInputError
from chestlens.io import read_image, read_series, scan_series

pytestmark = pytest.mark.inference


def _copy(files, folder: Path) -> Path:
    folder.mkdir()
    for path in files:
        shutil.copy(path, folder / path.name)
    return folder


def test_scan_sorts_by_patient_z_not_by_name(covid_dir, covid_scan):
    assert len(covid_scan) == 1
    info = covid_scan[0]
    assert info.n_slices == 148
    assert info.sorted_by == "image_position"
    assert info.direction.startswith("inferior -> superior")
    z = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in info.files]
    assert z == sorted(z)
    assert list(info.positions_mm) == pytest.approx(z)
    # the file names do not follow slice order: neither as text nor by their number
    by_text = sorted(covid_dir.glob("*.dcm"))
    by_number = sorted(by_text, key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
    assert list(info.files) != by_text
    assert list(info.files) != by_number
    assert info.slice_spacing_mm == pytest.approx(2.0)
    assert info.problems == ()
    assert (info.rows, info.cols) == (512, 512)
    assert info.pixel_spacing_mm == pytest.approx((0.748046875, 0.748046875))


def test_scan_reads_headers_only_and_is_fast(covid_dir):
    start = time.perf_counter()
    scan_series(covid_dir)
    assert time.perf_counter() - start < 5.0  # about 0.3 s unloaded; pixels are never decoded


def test_volume_in_hounsfield_units(covid_volume):
    hu, meta = covid_volume.pixels, covid_volume.meta
    assert hu.shape == (148, 512, 512) and hu.dtype == np.float32
    assert meta.format == "dicom-series" and meta.pixel_unit == "HU"
    assert meta.n_frames == 148
    assert meta.transfer_syntax_uid == "1.2.840.10008.1.2.4.70"  # JPEG Lossless SV1
    assert meta.slice_spacing_mm == pytest.approx(2.0)
    assert meta.slice_thickness_mm == pytest.approx(2.0)
    assert meta.pixel_spacing_mm == pytest.approx((0.748046875, 0.748046875))
    assert meta.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert meta.slice_positions_mm[0] == pytest.approx(-346.1)
    assert meta.slice_positions_mm[-1] == pytest.approx(-52.1)
    assert meta.window == (50.0, 350.0)
    assert meta.warnings == ()
    # air outside the body (image corners) is about -1000 HU
    corners = np.concatenate([hu[:, :30, :30].ravel(), hu[:, :30, -30:].ravel()])
    assert float(np.median(corners)) == pytest.approx(-1000, abs=30)
    assert hu.max() > 1000  # bone


def test_volume_slices_follow_the_sorted_files(covid_volume, covid_scan):
    info = covid_scan[0]
    for index in (0, 73, 147):
        single = read_image(info.files[index])
        np.testing.assert_array_equal(covid_volume.pixels[index], single.pixels)


def test_superior_slices_hold_more_lung_than_inferior_ones(covid_volume):
    # inferior->superior: the lowest slices reach the upper abdomen, mid-chest slices are mostly lung
    hu = covid_volume.pixels
    body_rows = slice(100, 400)
    lung_fraction = [(hu[s, body_rows, 60:450] < -500).mean() for s in (5, 100)]
    assert lung_fraction[0] < lung_fraction[1]


def test_missing_slice_is_reported(covid_scan, tmp_path):
    files = covid_scan[0].files[60:80]
    kept = files[:9] + files[10:]  # drop one slice in the middle
    folder = _copy(kept, tmp_path / "gap")
    info = scan_series(folder)[0]
    assert info.n_slices == 19
    assert any("missing slice" in problem and "about 1 slice" in problem for problem in info.problems)
    image = read_series(folder)
    assert any("missing slice" in warning for warning in image.meta.warnings)
    assert image.pixels.shape == (19, 512, 512)


def test_mixed_series_reads_the_largest_and_warns(covid_scan, pip_dicom, tmp_path):
    folder = _copy(covid_scan[0].files[70:74], tmp_path / "mixed")
    shutil.copy(pip_dicom("CT_small.dcm"), folder / "zz_other_series.dcm")
    (folder / "README.txt").write_text("not an image")
    infos = scan_series(folder)
    assert [info.n_slices for info in infos] == [4, 1]
    image = read_series(folder)
    assert image.pixels.shape == (4, 512, 512)
    assert any("folder holds 2 series" in warning for warning in image.meta.warnings)
    assert any("skipped 1 file" in warning and "README.txt" in warning for warning in image.meta.warnings)
    other = read_series(folder, series_key=infos[1].series_key)
    assert other.pixels.shape == (1, 128, 128)
    with pytest.raises(ChestlensInputError, match="no series with key"):
        read_series(folder, series_key="0000000000000000")


def test_duplicate_positions_are_reported(make_dicom, tmp_path):
    for index, z in enumerate([0.0, 1.0, 1.0, 2.0]):
        make_dicom(f"s{index}.dcm", ImagePositionPatient=[0, 0, z], InstanceNumber=index + 1)
    info = scan_series(tmp_path)[0]
    assert any("duplicate slice position" in problem for problem in info.problems)
    assert info.slice_spacing_mm == pytest.approx(1.0)


def test_mixed_orientation_falls_back_to_slice_location(make_dicom, tmp_path):
    make_dicom("a.dcm", SliceLocation=5.0, ImagePositionPatient=[0, 0, 5])
    make_dicom(
        "b.dcm",
        SliceLocation=1.0,
        ImagePositionPatient=[0, 0, 1],
        ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
    )
    info = scan_series(tmp_path)[0]
    assert info.sorted_by == "slice_location"
    assert any("mixed orientation" in problem for problem in info.problems)
    assert [p.name for p in info.files] == ["b.dcm", "a.dcm"]


def test_series_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ChestlensInputError, match="no DICOM images found"):
        read_series(tmp_path)
    with pytest.raises(ChestlensInputError, match="not a folder"):
        scan_series(tmp_path / "notes.txt")
