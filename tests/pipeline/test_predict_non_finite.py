"""Issue 19: a folder run of ``chestlens predict`` reports a NaN radiograph as one failed input and goes
on; a radiograph with a few NaN columns is screened (values masked at read time)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.io.test_non_finite import float_dicom_with_nan_columns, nan_slope_radiograph

from chestlens.cli import main

pytestmark = pytest.mark.inference


def test_predict_folder_fails_the_nan_file_alone_and_resumes(pip_dicom, tmp_path, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    shutil.copy(pip_dicom("RG1_UNCR.dcm"), folder / "chest.dcm")
    (folder / "nan.dcm").write_bytes(nan_slope_radiograph(pip_dicom))
    (folder / "float.dcm").write_bytes(float_dicom_with_nan_columns(pip_dicom))
    args = ["predict", str(folder), "--out", str(out), "--device", "cpu", "--cam", "none", "-q"]
    with pytest.raises(SystemExit) as caught:
        main(args)
    stderr = capsys.readouterr().err
    assert caught.value.code == 2 and "Traceback" not in stderr
    (line,) = stderr.splitlines()
    assert "nan.dcm: 100% of the pixel values are NaN or infinite" in line
    lines = [json.loads(text) for text in (out / "results.jsonl").read_text().splitlines()]
    records = {Path(line["key"].split("|")[0]).name: line for line in lines}
    assert records["nan.dcm"]["status"] == "failed"
    assert records["chest.dcm"]["status"] != "failed" and records["float.dcm"]["status"] != "failed"

    with pytest.raises(SystemExit) as again:  # a re-run does not stop at the file again
        main(args)
    assert again.value.code == 2 and len((out / "results.jsonl").read_text().splitlines()) == 3
