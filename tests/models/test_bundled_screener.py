"""The default chest X-ray screener ships inside the package and works offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import chestlens
from chestlens.data.transforms import preprocess
from chestlens.evaluate.calibration import apply_temperature
from chestlens.io import read_image
from chestlens.models.catalog import BUNDLED_DIR, bundled_names

NAME = "xray3-screener"
MAX_BUNDLE_BYTES = 22_000_000  # fp16 weights (6.9 MB) + the fp32 ONNX graph (13.7 MB) + JSON and card


def test_default_screener_is_bundled_and_small():
    assert NAME in bundled_names()
    folder = BUNDLED_DIR / NAME
    assert sum(f.stat().st_size for f in folder.iterdir()) <= MAX_BUNDLE_BYTES
    assert (folder / "MODEL_CARD.md").read_text().count("Research use only") >= 1


def test_default_screener_loads_offline_and_scores_a_real_radiograph(offline, pip_dicom):
    bundle = chestlens.load(NAME)
    spec = bundle.spec
    assert spec.labels == ["COVID-19", "pneumonia", "normal"] and spec.task == "xray3"
    value, low, high = spec.metrics["test"]["macro_auc"]
    assert low <= value <= high  # test metrics with a CI travel with the weights
    model = bundle.build_model()
    x = preprocess(read_image(pip_dicom("RG1_UNCR.dcm")), spec.preprocess)[None]
    with torch.no_grad():
        probs = apply_temperature(model(x).numpy(), spec.temperature)[0]
    assert probs.shape == (3,) and np.isclose(probs.sum(), 1.0, atol=1e-5)


def test_bundled_lung_segmenter_finds_the_lungs_of_a_real_radiograph(offline, pip_dicom):
    bundle = chestlens.load("lungs-segmenter")
    assert bundle.spec.kind == "segmenter" and bundle.spec.labels == ["lungs"]
    image = read_image(pip_dicom("RG1_UNCR.dcm"))
    x = preprocess(image, bundle.spec.preprocess)[None]
    with torch.no_grad():
        lungs = (torch.sigmoid(bundle.build_model()(x))[0, 0] >= 0.5).numpy()
    assert 0.15 < lungs.mean() < 0.6  # lung fields cover a plausible share of a frontal radiograph
    pixels = x[0, 0].numpy()
    assert pixels[lungs].mean() < pixels[~lungs].mean()  # aerated lung is darker than the rest


SHIPPED_WEIGHTS_LIMIT = 80_000_000  # all shipped weights together (issue "Segmentation")


def test_all_shipped_weights_stay_under_the_limit():
    names = bundled_names()
    assert NAME in names and "lungs-segmenter" in names, names  # no bundles folder is a failure
    total = sum((BUNDLED_DIR / name / "weights.safetensors").stat().st_size for name in names)
    assert total < SHIPPED_WEIGHTS_LIMIT


@pytest.mark.slow
def test_bundled_ct_lesion_segmenter_runs_by_default_on_a_ct_series(offline, source_dir):
    """The default Screener loads the shipped CT lesion bundle and measures a real labelled series."""
    from chestlens.pipeline.screener import Screener

    bundle = chestlens.load("lesions-ct-segmenter")
    assert bundle.spec.labels == ["background", "ggo", "consolidation"] and bundle.spec.task == "lesions-ct"
    card = (BUNDLED_DIR / "lesions-ct-segmenter" / "MODEL_CARD.md").read_text()
    assert "## Cross-validation of this recipe (read this first)" in card and "## No test split" in card
    series = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    lesions = Screener(classifier=None, lungs=None, device="cpu", cam=None).screen(series).result.lesions
    assert lesions.model.name == "lesions-ct-segmenter" and lesions.ran
    assert len(lesions.slice_scores) == 148 and 0 < lesions.lung_fraction_total < 0.5
    assert sum(lesions.volume_ml_by_label.values()) > 10  # this COVID-19 patient has visible lesions
