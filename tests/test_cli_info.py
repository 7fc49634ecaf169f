"""``chestlens info`` through the real CLI entry point (``demo``: tests/pipeline/test_predict_cli.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from chestlens.cli import main
from chestlens.io import scan_series

pytestmark = pytest.mark.inference


def _run(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    captured = capsys.readouterr()
    assert caught.value.code == 0, captured.err
    return captured.out


def test_info_table_for_a_ct_slice(pip_dicom, capsys):
    out = _run(capsys, "info", str(pip_dicom("CT_small.dcm")))
    for expected in (
        "dicom",
        "Explicit VR",
        "1.2.840.10008.1.2.1",
        "CT",
        "MONOCHROME2",
        "HU",
        "-896",
        "1167",
        "0.661468",
    ):
        assert expected in out


def test_info_json_for_a_radiograph(shared_data, capsys):
    summary = json.loads(_run(capsys, "info", "--json", str(shared_data / "dicom-samples" / "RG1_J2KI.dcm")))
    assert summary["format"] == "dicom"
    assert summary["transfer_syntax"] == {
        "uid": "1.2.840.10008.1.2.4.91",
        "name": "JPEG 2000 Image Compression",
    }
    assert summary["photometric_interpretation"] == "MONOCHROME1"
    assert (summary["rows"], summary["cols"], summary["frames"]) == (1955, 1841, 1)
    assert summary["pixel_unit"] == "unit" and summary["window"] == {"center": 15000.0, "width": 30000.0}
    assert 0.0 <= summary["pixel_range"][0] < summary["pixel_range"][1] <= 1.0
    assert summary["view"] == "PA" and summary["body_part"] == "CHEST"


def test_info_json_for_a_real_series_folder(source_dir, tmp_path, capsys):
    series = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    chosen = scan_series(series)[0].files[40:52]  # 12 real consecutive slices, copied in shuffled name order
    for path in chosen:
        shutil.copy(path, tmp_path / path.name)
    summary = json.loads(_run(capsys, "info", "--json", str(tmp_path)))
    assert summary["format"] == "dicom-series"
    assert summary["shape"] == [12, 512, 512]
    assert summary["value_range"]["unit"] == "HU" and summary["value_range"]["min"] <= -1000
    info = summary["series"]
    assert info["slice_count"] == 12 and info["sorted_by"] == "image_position"
    assert info["direction"].startswith("inferior -> superior")
    assert info["first_position_mm"] < info["last_position_mm"]
    assert info["slice_spacing_mm"] == pytest.approx(2.0)
    assert info["problems"] == [] and info["series_in_folder"] == 1
    table = _run(capsys, "info", str(tmp_path))
    assert "series.slice_count" in table and "image_position" in table


def test_info_for_a_png_in_a_jpg(source_dir, capsys):
    summary = json.loads(
        _run(capsys, "info", "--json", str(source_dir("covid-chestxray-dataset") / "images" / "000001.jpg"))
    )
    assert summary["format"] == "png" and summary["transfer_syntax"] is None
    assert summary["file_size_bytes"] > 0
