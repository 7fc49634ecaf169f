"""COVID-CT-MD: one sample per series, slice and lobe labels matched in slice-location order."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from chestlens.data.sources import covid_ct_md
from chestlens.errors import ChestlensInputError
from chestlens.io import scan_series

# cap002's infected slices in label order (label 0 = most superior): row 55 of the arrays, i.e. its
# Label Index 56 minus the gap at 43 (row 56 would mark 39-44, 48, 86-88 and 102-106).
CAP002_INFECTED = list(range(89, 119))


@pytest.fixture(scope="module")
def samples(source_dir):
    loaded = covid_ct_md.load(source_dir(covid_ct_md.FOLDER))
    return {sample.patient_id.removeprefix("covid_ct_md:"): sample for sample in loaded}


@pytest.fixture(scope="module")
def p001(samples):
    return samples["P001"]


def test_three_patients_one_per_class(samples):
    assert sorted(samples) == ["P001", "cap002", "normal002"]
    found = {
        name: (s.uid, s.findings, s.modality, s.sex, s.age, s.extra["n_files"], s.extra.get("label_row"))
        for name, s in samples.items()
    }
    assert found == {
        "P001": (
            "covid_ct_md/Sample data/COVID-19 subjects/P001",
            ("COVID-19",),
            "ct",
            "M",
            39.0,
            "148",
            "0",
        ),
        "cap002": ("covid_ct_md/Sample data/Cap subjects", ("CAP",), "ct", "F", 77.0, "131", "55"),
        "normal002": (
            "covid_ct_md/Sample data/Normal subjects/normal002",
            ("Normal",),
            "ct",
            "M",
            68.0,
            "167",
            None,
        ),
    }
    assert samples["normal002"].extra["diagnosis_source"] == "folder name"
    assert samples["cap002"].extra["diagnosis_source"] == covid_ct_md.INDEX


def test_series_sample(p001):
    assert p001.uid == "covid_ct_md/Sample data/COVID-19 subjects/P001"
    assert (p001.patient_id, p001.findings, p001.modality) == ("covid_ct_md:P001", ("COVID-19",), "ct")
    assert (p001.sex, p001.age) == ("M", 39.0)
    assert p001.extra["label_row"] == "0" and p001.extra["n_files"] == "148"


def test_slice_labels(p001):
    labels = covid_ct_md.slice_labels(p001)
    assert len(labels) == 148
    assert sum(label.infected for label in labels) == 80
    z = np.array([label.z_mm for label in labels])
    assert (np.diff(z) > 0).all()  # returned inferior -> superior
    assert z[0] == pytest.approx(-346.1) and z[-1] == pytest.approx(-52.1)
    assert labels == covid_ct_md.slice_labels(p001.path)
    # Label 0 is the most superior slice: the RUL-infected slices lie above the RML ones.
    height = {lobe: [lab.z_mm for lab in labels if lab.lobes[lobe]] for lobe in covid_ct_md.LOBES}
    assert min(height["RUL"]) > max(height["RML"])
    assert max(height["RLL"]) < max(height["RUL"])
    assert all(lab.infected for lab in labels if any(lab.lobes.values()))


def test_cap002_flat_folder_gets_row_55(samples):
    """cap002's slices lie directly in ``Cap subjects``; its PatientID finds its Index.csv row."""
    cap = samples["cap002"]
    labels = covid_ct_md.slice_labels(cap)
    assert labels == covid_ct_md.slice_labels(cap.path)
    assert len(labels) == 131
    z = np.array([label.z_mm for label in labels])
    assert (np.diff(z) > 0).all()
    assert z[0] == pytest.approx(-322.1) and z[-1] == pytest.approx(-62.1)
    # Its files follow slice order from the top: IM0001 is the most superior slice (label 0).
    assert [label.file.name for label in labels[::-1][:2]] == ["IM0001.dcm", "IM0002.dcm"]
    in_label_order = labels[::-1]
    assert [i for i, label in enumerate(in_label_order) if label.infected] == CAP002_INFECTED
    lobes = {lobe for label in labels for lobe, hit in label.lobes.items() if hit}
    assert lobes == {"LLL", "RLL"}  # row 56 would give RUL + RLL
    assert all(label.infected for label in labels if any(label.lobes.values()))


def test_normal_patient_has_no_infected_slice(samples):
    normal = samples["normal002"]
    labels = covid_ct_md.slice_labels(normal)
    assert len(labels) == 167 and not any(label.infected for label in labels)
    assert not any(any(label.lobes.values()) for label in labels)
    z = np.array([label.z_mm for label in labels])
    assert (np.diff(z) > 0).all() and z[-1] == pytest.approx(4.3)


def test_unlisted_non_normal_series_has_no_labels(samples, tmp_path):
    (tmp_path / "Index.csv").write_text("Label Index,Diagnosis,Relative Path,Folder/ID\n0,COVID-19,x,P1\n")
    np.save(tmp_path / "Slice-level-labels-updated-1.npy", np.zeros((1, 200), np.int32))
    series = tmp_path / "COVID-19 Cases" / "P2"
    series.mkdir(parents=True)
    source = samples["P001"].path
    for path in sorted(source.glob("*.dcm"))[:2]:
        (series / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ChestlensInputError, match=r"Index\.csv does not list P2"):
        covid_ct_md.slice_labels(series)


def test_uuid_uids_are_read_without_a_warning_per_file(source_dir, caplog):
    """cap002 holds UUID strings as UIDs: readable, with no pydicom warning or log line quoting them."""
    folder = source_dir(covid_ct_md.FOLDER) / "Sample data" / "Cap subjects"
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG, logger="pydicom"):
        warnings.simplefilter("always")
        (info,) = scan_series(folder)
    assert info.n_slices == 131 and info.series_key
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "VR UI" in m]


def test_label_index_gap(tmp_path):
    (tmp_path / "Index.csv").write_text(
        "Label Index,Diagnosis,Relative Path,Folder/ID\n0,COVID-19,x,P1\n2,CAP,y,c1"
    )
    np.save(tmp_path / "Slice-level-labels-updated-1.npy", np.zeros((2, 200), np.int32))
    assert covid_ct_md.label_rows(tmp_path) == {"P1": (0, "COVID-19"), "c1": (1, "CAP")}
    np.save(tmp_path / "Slice-level-labels-updated-1.npy", np.zeros((3, 200), np.int32))
    with pytest.raises(ChestlensInputError, match=r"Index\.csv"):
        covid_ct_md.label_rows(tmp_path)
