"""De-identification: identifiers become salted keys and never reach metadata, info output or errors."""

from __future__ import annotations

import json

import pytest

from chestlens.cli import main
from chestlens.errors import ChestlensInputError
from chestlens.io import read_image, read_series
from chestlens.io.deid import DEFAULT_SALT, SALT_ENV, salted_key

pytestmark = pytest.mark.inference

NAME, PATIENT_ID, BIRTH_DATE = "Doe^Jane^Q", "PID-7731-XK", "19700412"
SECRETS = ("Doe", "Jane", PATIENT_ID, "7731", BIRTH_DATE, "1970-04-12")


@pytest.fixture
def identified_dicom(make_dicom):
    return make_dicom(
        "identified.dcm",
        PatientName=NAME,
        PatientID=PATIENT_ID,
        PatientBirthDate=BIRTH_DATE,
        OtherPatientIDs="PID-7731-OLD",
        InstitutionName="Jane Doe Memorial",
    )


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked"


def test_salted_key(monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    key = salted_key(PATIENT_ID)
    assert len(key) == 16 and int(key, 16) >= 0
    assert key == salted_key(f"  {PATIENT_ID} ")
    assert salted_key("") is None and salted_key(None) is None
    monkeypatch.setenv(SALT_ENV, "site-secret")
    assert salted_key(PATIENT_ID) != key
    assert DEFAULT_SALT  # documented public default


def test_metadata_holds_keys_not_identifiers(identified_dicom, monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    image = read_image(identified_dicom)
    assert image.meta.patient_key == salted_key(PATIENT_ID)
    assert image.meta.study_key == salted_key("1.2.826.0.1.3680043.8.498.1")
    _assert_clean(repr(image.meta))


@pytest.mark.parametrize("as_json", [True, False])
def test_info_never_prints_identifiers(identified_dicom, capsys, monkeypatch, as_json):
    monkeypatch.delenv(SALT_ENV, raising=False)
    with pytest.raises(SystemExit) as caught:
        main(["info", str(identified_dicom), *(["--json"] if as_json else [])])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    _assert_clean(out)
    if as_json:
        summary = json.loads(out)
        assert summary["keys"]["patient"] == salted_key(PATIENT_ID)
        assert summary["modality"] == "CT" and summary["value_range"]["unit"] == "HU"


def test_series_and_errors_never_carry_identifiers(make_dicom, tmp_path, capsys):
    for index in range(3):
        make_dicom(
            f"s{index}.dcm", PatientName=NAME, PatientID=PATIENT_ID, ImagePositionPatient=[0, 0, index]
        )
    _assert_clean(repr(read_series(tmp_path).meta))
    with pytest.raises(SystemExit):
        main(["info", "--json", str(tmp_path)])
    _assert_clean(capsys.readouterr().out)
    whole = (tmp_path / "s0.dcm").read_bytes()
    assert PATIENT_ID.encode() in whole[:600]
    with pytest.raises(ChestlensInputError) as caught:
        read_image(whole[: whole.index(PATIENT_ID.encode()) + 4], name="cut.dcm")
    _assert_clean(str(caught.value))
