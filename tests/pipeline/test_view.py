"""The gate's view check: lateral radiographs without DICOM tags are rejected as "lateral view"."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chestlens.io.samples import sample_path
from chestlens.pipeline.screener import Screener
from chestlens.pipeline.view import (
    CT_PICTURE_MODEL,
    GRADIENT_BINS,
    GRADIENT_CELLS,
    N_FEATURES,
    VIEW_MODEL,
    ViewModel,
    check_ct_picture,
    check_view,
    view_features,
)


@pytest.mark.parametrize(("path", "positives"), [(VIEW_MODEL, "laterals"), (CT_PICTURE_MODEL, "positives")])
def test_shipped_models_are_plain_numbers_with_their_cross_validation(path, positives):
    stored = json.loads(path.read_text())
    model = ViewModel.read(path)
    n = N_FEATURES
    assert model.mean.shape == model.scale.shape == model.weights.shape == (n,)
    assert 0.0 < model.threshold < 1.0 and (model.scale > 0).all()
    report = stored["report"]
    assert report["chosen"]["threshold"] == model.threshold  # the out-of-fold threshold is the one used
    assert report[positives] >= 30 and report["folds"] >= 5 and report["repeats"] >= 5
    assert "view_check.py" in report["command"]
    assert (
        report["all_data_fit"].get("frontal_rejected", report["all_data_fit"].get("negative_rejected")) == 0
    )


def test_features_and_check_on_synthetic_input():
    work = np.random.default_rng(0).random((300, 240), dtype=np.float32)
    lungs = np.zeros((256, 256), np.float32)
    features = view_features(work, lungs)
    assert features.shape == (N_FEATURES,)
    edges = GRADIENT_CELLS**2 * GRADIENT_BINS
    assert features[-edges - 1] == pytest.approx(np.log(300 / 240))
    shares = features[-edges:].reshape(GRADIENT_CELLS**2, GRADIENT_BINS)
    assert np.allclose(shares.sum(axis=1), 1.0, atol=1e-4)  # each cell's orientations sum to 1
    n = features.size
    always = ViewModel(np.zeros(n), np.ones(n), np.zeros(n), bias=10.0, threshold=0.5, description="")
    never = ViewModel(np.zeros(n), np.ones(n), np.zeros(n), bias=-10.0, threshold=0.5, description="")
    failed = check_view(work, lungs, always)
    assert not failed.passed and failed.detail.startswith("lateral view")
    assert check_view(work, lungs, never).passed
    failed = check_ct_picture(work, lungs, always, features=features)
    assert (
        not failed.passed and failed.name == "ct_picture" and "screen the CT series as DICOM" in failed.detail
    )
    assert check_ct_picture(work, lungs, never).passed


@pytest.fixture(scope="module")
def screener() -> Screener:
    return Screener()


@pytest.mark.inference
def test_frontal_dicom_passes_the_view_check(screener):
    result = screener.screen(sample_path("RG1_UNCR.dcm")).result
    [view] = [c for c in result.gate.checks if c.name == "view"]
    [ct_picture] = [c for c in result.gate.checks if c.name == "ct_picture"]
    assert view.passed and ct_picture.passed and result.gate.accepted


@pytest.mark.shared_data
def test_lateral_pictures_are_rejected_frontal_ones_of_the_same_source_accepted(screener, shared_data):
    """The shared ieee8023 and radiopaedia laterals (JPEG/PNG, no tags) were all accepted as frontal.

    They are the model's own training films (the out-of-fold figures are in ``view_model.json``): this
    checks that the gate uses the check, not how well it generalises."""
    from chestlens.data.registry import load_samples

    samples = load_samples(shared_data, ["ieee8023", "radiopaedia"])
    laterals = [s.path for s in samples if s.view == "L"]
    frontals = [s.path for s in samples if s.view in ("PA", "AP")][:40]
    verdicts = [s.result.gate for s in screener.iter_screen(laterals)]
    rejected = [v for v in verdicts if not v.accepted and "lateral view" in v.reason]
    assert len(laterals) >= 30 and len(rejected) >= 0.95 * len(laterals)
    accepted = [s.result.gate.accepted for s in screener.iter_screen(frontals)]
    assert all(accepted)


@pytest.mark.shared_data
def test_pictures_of_ct_slices_are_not_screened_as_radiographs(screener, shared_data):
    """Inf-Net's CT slices are JPEG pictures: no Hounsfield units, so the gate sees a radiograph; 5 of the
    83 passed every check with lungs-segmenter 0.1.0 and 23 with 0.2.0 before the ``ct_picture`` check.

    They are that check's own training pictures (out-of-fold figures in ``ct_picture_model.json``): this
    checks that the gate uses it."""
    from chestlens.data.registry import load_samples

    pictures = [s.path for s in load_samples(shared_data, ["infnet"])]
    verdicts = [s.result.gate for s in screener.iter_screen(pictures)]
    assert len(pictures) == 83 and not any(v.accepted for v in verdicts)
    assert sum("picture of an axial CT slice" in v.reason for v in verdicts) >= 20
