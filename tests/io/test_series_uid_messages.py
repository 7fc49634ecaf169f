"""A series whose UIDs are not valid DICOM UIDs reads without one pydicom message per slice.

COVID-CT-MD's cap002 and normal002 store UUID strings as Study and Series Instance UIDs. pydicom used to
warn and log once per element and slice while the series was read, quoting the value: 133 lines for
``chestlens info`` on cap002 and 169 on normal002 before commit f035337. The reader now converts the UID
elements with value validation off (:func:`chestlens.io.dicom.open_dicom`), so reading prints nothing;
these tests keep it that way for the whole read (headers and pixels), not just the scan.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from chestlens.cli import main
from chestlens.io import read_series
from chestlens.io.samples import sample_path

SECRET = "1.2.826.0.1.PATIENT12345"  # letters: not a valid UI value
UUID_SERIES = ("Cap subjects", "Normal subjects/normal002")


def _messages(caught: list[warnings.WarningMessage], records: list[logging.LogRecord]) -> list[str]:
    """pydicom's value messages among the warnings and log records."""
    texts = [str(w.message) for w in caught] + [r.getMessage() for r in records]
    return [text for text in texts if "Invalid value for VR" in text]


@pytest.fixture
def bad_uid_series(tmp_path) -> Path:
    """Six CT_small slices whose Study and Series Instance UIDs hold letters."""
    folder = tmp_path / "series"
    folder.mkdir()
    template = pydicom.dcmread(sample_path("CT_small.dcm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns while the invalid values are assigned
        for k in range(6):
            ds = copy.deepcopy(template)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = SECRET, SECRET + ".7"
            ds.ImagePositionPatient = [-80.0, -90.0, 5.0 * k]
            ds.save_as(folder / f"slice{k}.dcm", enforce_file_format=True)
    return folder


def test_reading_a_series_with_invalid_uids_says_nothing_per_slice(bad_uid_series, caplog):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG, logger="pydicom"):
        warnings.simplefilter("always")
        image = read_series(bad_uid_series)
    assert image.pixels.shape[0] == 6 and image.meta.series_key
    assert _messages(caught, caplog.records) == []


def test_info_on_that_series_prints_no_uid_message(bad_uid_series, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["info", str(bad_uid_series), "--json"])
    assert exited.value.code == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "PATIENT12345" not in captured.out


@pytest.mark.parametrize("name", UUID_SERIES)
def test_the_uuid_series_of_covid_ct_md_read_silently(name, source_dir, caplog):
    folder = source_dir("covid-ct-md") / "Sample data" / name
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG, logger="pydicom"):
        warnings.simplefilter("always")
        image = read_series(folder)
    assert image.pixels.shape[0] in (131, 167)
    assert _messages(caught, caplog.records) == []
