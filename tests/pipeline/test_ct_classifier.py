"""A CT classifier (task ct3) runs in the screener on a CT slice and on a CT series."""

from __future__ import annotations

import pytest

from chestlens.pipeline.screener import Screener

CT_LABELS = ["COVID-19", "CAP", "normal"]


@pytest.fixture
def ct_screener(tiny_classifier_bundle) -> Screener:
    bundle = tiny_classifier_bundle(task="ct3", labels=CT_LABELS)
    return Screener(classifier=str(bundle), lungs=None, lesions=[], runtime="torch", device="cpu")


def test_ct_classifier_classifies_a_ct_slice(ct_screener, pip_dicom):
    screening = ct_screener.screen(pip_dicom("CT_small.dcm"))
    result = screening.result
    assert result.gate.accepted and result.gate.image_type == "chest_ct"
    assert list(result.classification.probabilities) == CT_LABELS
    assert sum(result.classification.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.classification.slice_indices is None
    assert result.explanation.target_label == result.classification.top_label
    assert screening.heatmap.shape == (32, 32)
    assert not any("CT classifier" in note for note in result.notes)


def test_ct_classifier_classifies_a_ct_series_on_its_lung_slices(ct_screener, source_dir):
    series = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    result = ct_screener.screen(series).result
    classification = result.classification
    assert classification is not None and list(classification.probabilities) == CT_LABELS
    # the slices above the lung apices are left out (138 of P001's 148 slices show lungs, gate docs)
    assert 100 < len(classification.slice_indices) < 148
    assert len(classification.slice_probabilities) == len(classification.slice_indices)
    mean = [
        sum(p[k] for p in classification.slice_probabilities) / len(classification.slice_indices)
        for k in range(3)
    ]
    assert list(classification.probabilities.values()) == pytest.approx(mean, abs=1e-3)
    assert any("mean over the" in note for note in result.notes)


def test_radiograph_classifier_leaves_ct_unclassified_with_a_reason(pip_dicom):
    result = Screener(lesions=[], runtime="onnx").screen(pip_dicom("CT_small.dcm")).result
    assert result.classification is None
    assert any("no CT classifier loaded" in note for note in result.notes)
