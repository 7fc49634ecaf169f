"""Adapter conventions: detect() per folder, registration, parsing helpers and cross-source links."""

from __future__ import annotations

import pytest

from chestlens.data.fields import parse_age, parse_sex
from chestlens.data.linking import link_samples
from chestlens.data.registry import find_sources
from chestlens.data.sources import (
    actualmed,
    covid_ct_md,
    figure1,
    generalblockchain,
    hannover,
    ieee8023,
    infnet,
    kermany,
    nih,
    radiopaedia,
    read_table,
    v7_lungs,
)
from chestlens.errors import ChestlensInputError

MODULES = (
    ieee8023,
    hannover,
    kermany,
    nih,
    radiopaedia,
    actualmed,
    figure1,
    v7_lungs,
    generalblockchain,
    infnet,
    covid_ct_md,
)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.SOURCE)
def test_detect_own_folder_only(module, shared_data):
    folders = sorted(p for p in shared_data.iterdir() if p.is_dir())
    assert [f.name for f in folders if module.detect(f)] == [module.FOLDER]
    assert not module.detect(shared_data)
    assert (module.ADAPTER.name, module.ADAPTER.folder) == (module.SOURCE, module.FOLDER)


def test_parsers():
    assert [parse_sex(v) for v in ("M", "f", "w", "male", "", "O")] == ["M", "F", "F", "M", None, None]
    assert parse_age("058Y") == 58.0 and parse_age(" 54 ") == 54.0 and parse_age("6M") == 0.5
    assert parse_age("") is None and parse_age("n/a") is None and parse_age("300") is None
    assert ieee8023.canonical_patientid("350a") == "350" and ieee8023.canonical_patientid("97") == "97"


def test_read_table_errors(tmp_path):
    with pytest.raises(ChestlensInputError, match="not found"):
        read_table(tmp_path / "metadata.csv", ["finding"])
    (tmp_path / "metadata.csv").write_text("patientid,view\n1,PA\n")
    with pytest.raises(ChestlensInputError, match=r"metadata\.csv: missing column\(s\) finding"):
        read_table(tmp_path / "metadata.csv", ["patientid", "finding"])


def test_ieee8023_rows_merge_by_file_and_letter(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "metadata.csv").write_text(
        "patientid,finding,view,modality,filename\n"
        "350a,COVID-19,PA,X-ray,a.png\n350b,COVID-19,AP,X-ray,b.png\n"
        "7,Pneumonia,PA,X-ray,c.png\n4,Pneumonia,PA,X-ray,c.png\n9,,PA,X-ray,d.png\n"
    )
    records = ieee8023.read_records(tmp_path / "metadata.csv")
    assert [r.patient_id for r in records] == ["ieee8023:350", "ieee8023:350", "ieee8023:4", "ieee8023:9"]
    assert records[2].extra["patientids"] == "7|4" and records[2].extra["patient_aliases"] == "ieee8023:7"
    assert ieee8023.shared_file_patient_links(tmp_path) == [("ieee8023:4", "ieee8023:7")]
    assert ieee8023.load(tmp_path) == []
    assert len(ieee8023.missing_images(tmp_path)) == 4
    (tmp_path / "metadata.csv").write_text("patientid,finding,view,modality,filename\n1,X,PA,X-ray,\n")
    with pytest.raises(ChestlensInputError, match="data row 1: empty 'filename'"):
        ieee8023.read_records(tmp_path / "metadata.csv")


def test_cross_source_links(source_dir):
    samples = [
        *ieee8023.load(source_dir(ieee8023.FOLDER)),
        *hannover.load(source_dir(hannover.FOLDER)),
        *v7_lungs.load(source_dir(v7_lungs.FOLDER)),
        *generalblockchain.load(source_dir(generalblockchain.FOLDER)),
    ]
    group_of = link_samples(samples).group_of
    # A Hannover image re-published by ieee8023 and annotated by V7 joins the Hannover patient.
    v7_hannover = "v7_lungs/covid-chestxray-dataset/images/b343e657.jpg"
    assert group_of[v7_hannover] == group_of["hannover/png/b343e657.png"] == "hannover:042f06a9"
    # V7 and GeneralBlockchain re-use ieee8023 images under the same patient id string.
    ieee_ids = {s.extra["image_key"]: s.patient_id for s in samples if s.source == "ieee8023"}
    reused = [s for s in samples if s.source != "ieee8023" and s.extra["image_key"] in ieee_ids]
    assert reused and all(s.patient_id == ieee_ids[s.extra["image_key"]] for s in reused)


def test_registry_finds_every_source(shared_data):
    found = {adapter.name: folder.name for adapter, folder in find_sources(shared_data)}
    assert {m.SOURCE: found.get(m.SOURCE) for m in MODULES} == {m.SOURCE: m.FOLDER for m in MODULES}
    samples = [s for m in MODULES for s in m.load(shared_data / m.FOLDER)]
    # 146 of radiopaedia, actualmed and figure1; 3 series (P001, cap002, normal002) of covid_ct_md
    assert len({s.uid for s in samples}) == len(samples) == 2093
    assert all(isinstance(v, str) for s in samples for v in s.extra.values())
    assert all(
        s.uid.startswith(f"{s.source}/") and s.patient_id.split(":")[0] in ("ieee8023", s.source)
        for s in samples
    )
