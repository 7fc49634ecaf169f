"""DICOM values never reach stderr or logs through pydicom's validation messages."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pydicom
import pytest
from pydicom import config
from pydicom.valuerep import validate_value

from chestlens.io.redact import withhold_dicom_values

SECRET = "1.2.826.0.1.PATIENT12345"  # letters make it an invalid UI value, as a badly built export has


def test_the_logger_keeps_the_vr_not_the_value(caplog):
    withhold_dicom_values()
    with caplog.at_level(logging.WARNING, logger="pydicom"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        withhold_dicom_values()  # idempotent; re-applies the warning filter after simplefilter
        validate_value("UI", SECRET, config.WARN)
    assert "Invalid value for VR UI (value withheld)" in caplog.text
    assert "PATIENT12345" not in caplog.text
    assert not [w for w in caught if "PATIENT12345" in str(w.message)]


@pytest.mark.inference
def test_predict_with_dicom_out_and_info_print_no_uid(pip_dicom, tmp_path):
    """Writing the SR and SEG copies the study and series UIDs, which pydicom validates and quoted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = SECRET, SECRET + ".1"
        path = tmp_path / "bad-uids.dcm"
        ds.save_as(path)
    commands = (["predict", str(path), "--dicom-out", str(tmp_path / "out"), "--json"], ["info", str(path)])
    for command in commands:
        done = subprocess.run(
            [sys.executable, "-m", "chestlens.cli", *command], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "PATIENT12345" not in done.stderr and "PATIENT12345" not in done.stdout
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".dcm", ".dcm"]  # the SR and SEG
