"""X-ray classification sources on the real data: counts as documented in each SOURCE.md."""

from __future__ import annotations

from collections import Counter

import pytest

from chestlens.data.sources import hannover, ieee8023, kermany, nih


@pytest.fixture(scope="module")
def ieee(source_dir):
    folder = source_dir(ieee8023.FOLDER)
    return folder, ieee8023.load(folder)


def test_ieee8023_counts(ieee):
    _, samples = ieee
    assert len(samples) == 182  # one sample per file: 185 rows, 3 files listed under 285 and 339
    raw_ids = {i for s in samples for i in s.extra["patientids"].split("|")}
    assert len(raw_ids) == 90
    assert len({s.patient_id for s in samples}) == 89  # 339 merged into 285
    assert Counter(s.view for s in samples) == {"PA": 108, "AP": 28, "L": 25, "AP Supine": 21}
    assert Counter(s.extra["finding"] for s in samples)["COVID-19"] == 96
    assert all(s.modality == "xray" and s.path.is_file() for s in samples)
    assert len({s.uid for s in samples}) == len(samples)


def test_ieee8023_shared_file_merge(ieee):
    folder, samples = ieee
    assert ieee8023.shared_file_patient_links(folder) == [("ieee8023:285", "ieee8023:339")]
    shared = {s.path.name: s for s in samples if s.extra["patientids"] == "285|339"}
    assert set(shared) == {"000001-24.jpg", "000006-17.jpg", "000007-15.jpg"}
    assert {s.patient_id for s in shared.values()} == {"ieee8023:285"}
    assert all(s.extra["patient_aliases"] == "ieee8023:339" for s in shared.values())
    assert ieee8023.missing_images(folder) == []


def test_ieee8023_fields_and_filters(ieee):
    folder, samples = ieee
    by_name = {s.path.name: s for s in samples}
    first = by_name["jkms-35-e79-g001-l-a.jpg"]
    assert (first.patient_id, first.sex, first.age, first.view) == ("ieee8023:17", "M", 54.0, "AP")
    assert first.uid == "ieee8023/images/jkms-35-e79-g001-l-a.jpg"
    ards = [s for s in samples if s.extra["finding"] == "COVID-19, ARDS"]
    assert len(ards) == 9 and all(s.findings == ("COVID-19", "ARDS") for s in ards)
    recipe = ieee8023.load(folder, findings=["COVID-19"], views=["PA"])
    assert len(recipe) == 48
    assert all(s.extra["finding"] == "COVID-19" and s.view == "PA" for s in recipe)
    assert ieee8023.load(folder, modalities=["CT"]) == []


def test_hannover(source_dir):
    samples = hannover.load(source_dir(hannover.FOLDER))
    assert len(samples) == 196
    assert len({s.patient_id for s in samples}) == 59
    assert Counter(s.view for s in samples) == {"AP": 157, "PA": 39}
    assert {s.findings for s in samples} == {("COVID-19",)}
    assert {s.sex for s in samples} == {"M", "F"}
    assert all(s.age is None for s in samples)  # redacted upstream
    assert Counter(s.extra["dicom_modality"] for s in samples) == {"CR": 171, "DX": 25}
    flagged = {s.path.stem for s in samples if s.extra.get("ieee8023_finding") == "No Finding"}
    assert flagged == {"7afaaccc", "19073f37", "8fc103ca"}
    assert (
        samples[0].patient_id == "hannover:042f06a9" and samples[0].extra["image_key"] == "hannover:b343e657"
    )


def test_kermany(source_dir):
    samples = kermany.load(source_dir(kermany.FOLDER))
    assert len(samples) == 906
    assert len({s.patient_id for s in samples}) == 721
    counts = Counter(s.findings for s in samples)
    assert counts == {("NORMAL",): 328, ("PNEUMONIA", "bacteria"): 297, ("PNEUMONIA", "virus"): 281}
    patients = {f[-1]: len({s.patient_id for s in samples if s.findings == f}) for f in counts}
    assert patients == {"NORMAL": 298, "bacteria": 223, "virus": 246}
    assert {s.extra["split"] for s in samples} == {"train"}
    assert all(s.age is None and s.extra["age_band"] == "child" for s in samples)


def test_kermany_patient_groups():
    assert kermany.patient_group("person1430_bacteria_3695.jpeg") == "kermany:person1430"
    assert kermany.patient_group("person12_virus_44.jpeg") == "kermany:person12"
    assert kermany.patient_group("NORMAL2-IM-0416-0001-0002.jpeg") == "kermany:IM-0416"
    assert kermany.patient_group("IM-0416-0001.jpeg") == "kermany:IM-0416"


def test_nih(source_dir):
    folder = source_dir(nih.FOLDER)
    samples = nih.load(folder)
    assert len(samples) == 379
    assert len({s.patient_id for s in samples}) == 260
    assert Counter(s.extra["folder"] for s in samples) == {
        "X-Ray Image DataSet/Pneumonia": 177,
        "X-Ray Image DataSet/No_findings": 202,
    }
    assert Counter(s.view for s in samples) == {"AP": 230, "PA": 149}
    first = next(s for s in samples if s.path.name == "00000211_013.png")
    assert first.findings == ("Cardiomegaly", "Edema", "Effusion", "Infiltration", "Pneumonia")
    assert (first.patient_id, first.sex, first.age) == ("nih:211", "F", 59.0)
    # 2500 x 2048 px at 0.168 mm originally, 512 x 512 here.
    row_mm, col_mm = nih.pixel_spacing_mm(first, (512, 512))
    assert row_mm == pytest.approx(0.168 * 2048 / 512) and col_mm == pytest.approx(0.168 * 2500 / 512)
    assert all(s.age is not None and 5 <= s.age <= 85 for s in samples)
