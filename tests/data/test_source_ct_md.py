"""COVID-CT-MD: one sample per series, slice and lobe labels matched in slice-location order."""

from __future__ import annotations

import numpy as np
import pytest

from chestlens.data.sources import covid_ct_md
from chestlens.errors import ChestlensInputError


@pytest.fixture(scope="module")
def p001(source_dir):
    samples = covid_ct_md.load(source_dir(covid_ct_md.FOLDER))
    assert len(samples) == 1
    return samples[0]


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


def test_label_index_gap(tmp_path):
    (tmp_path / "Index.csv").write_text(
        "Label Index,Diagnosis,Relative Path,Folder/ID\n0,COVID-19,x,P1\n2,CAP,y,c1"
    )
    np.save(tmp_path / "Slice-level-labels-updated-1.npy", np.zeros((2, 200), np.int32))
    assert covid_ct_md.label_rows(tmp_path) == {"P1": (0, "COVID-19"), "c1": (1, "CAP")}
    np.save(tmp_path / "Slice-level-labels-updated-1.npy", np.zeros((3, 200), np.int32))
    with pytest.raises(ChestlensInputError, match=r"Index\.csv"):
        covid_ct_md.label_rows(tmp_path)
