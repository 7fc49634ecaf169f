"""The screening chain on real pip-shipped images with the bundled models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import chestlens
from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.data.transforms import preprocess
from chestlens.evaluate.calibration import apply_temperature
from chestlens.io import read_image
from chestlens.pipeline.schema import FailedInput, ScreeningResult
from chestlens.pipeline.screener import Screener


@pytest.fixture(scope="module")
def screener() -> Screener:
    return Screener()  # ONNX Runtime, the default


@pytest.fixture(scope="module")
def chest(screener, pip_dicom):
    return screener.screen(pip_dicom("RG1_UNCR.dcm"))


def test_chest_radiograph_gets_a_full_result(chest):
    result = chest.result
    assert result.gate.accepted and result.gate.image_type == "chest_radiograph"
    assert result.disclaimer == RESEARCH_USE_DISCLAIMER
    probabilities = result.classification.probabilities
    assert list(probabilities) == ["COVID-19", "pneumonia", "normal"]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert result.classification.top_label == max(probabilities, key=probabilities.get)
    for decision in result.classification.decisions:
        assert decision.positive == (probabilities[decision.label] >= decision.threshold)
    assert 0.0 <= result.explanation.energy_in_lungs <= 1.0
    assert result.explanation.target_label == result.classification.top_label
    # two adult lungs on a PA film cover roughly 0.2-0.5 of the detector area
    assert 0.15 < result.lungs.area_fraction < 0.6
    assert result.lungs.area_mm2 is None or result.lungs.area_mm2 > 10_000
    assert {"read", "gate", "lungs", "classify", "total"} <= set(result.timings_ms)
    assert ScreeningResult.model_validate_json(result.model_dump_json()) == result


def test_probabilities_equal_the_bundle_path(chest, pip_dicom):
    """The pipeline's preprocessing is the bundle's: the numbers evaluation computes from the full
    image, up to the working image (downsampled once to 512 px, then resized by the graph; measured
    on this 3.6 MP radiograph: 2.7e-3)."""
    bundle = chestlens.load("xray3-screener")
    model = bundle.build_model()
    x = preprocess(read_image(pip_dicom("RG1_UNCR.dcm")), bundle.spec.preprocess)[None]
    with torch.no_grad():
        expected = apply_temperature(model(x).numpy(), bundle.spec.temperature)[0]
    got = np.array(list(chest.result.classification.probabilities.values()))
    np.testing.assert_allclose(got, expected, atol=5e-3)


def test_heatmap_and_masks_have_documented_shapes(chest):
    assert chest.heatmap.shape == (192, 192)
    assert chest.heatmap.min() >= 0.0 and chest.heatmap.max() <= 1.0
    assert chest.lung_mask.shape == (256, 256) and chest.lung_mask.dtype == bool


def test_leg_radiograph_is_rejected_without_scores(screener, pip_dicom):
    result = screener.screen(pip_dicom("RG3_UNCR.dcm")).result
    assert not result.gate.accepted
    assert result.gate.reason
    assert result.classification is None and result.explanation is None and result.lesions is None


def test_ct_slice_gets_lungs_from_hounsfield_units(screener, pip_dicom):
    result = screener.screen(pip_dicom("CT_small.dcm")).result
    assert result.gate.accepted and result.gate.image_type == "chest_ct"
    assert 0.05 < result.lungs.area_fraction < 0.6
    assert result.lungs.model is None
    assert any("CT classifier" in note for note in result.notes)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam"])
def test_cam_methods_are_selectable(pip_dicom, method):
    screening = Screener(runtime="torch", device="cpu", cam=method).screen(pip_dicom("RG1_UNCR.dcm"))
    assert screening.result.explanation.method == method
    assert screening.heatmap.shape == (192, 192)


def test_batch_equals_single_and_keeps_failures_in_place(screener, chest, pip_dicom, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    sources = [pip_dicom("RG1_UNCR.dcm"), broken, pip_dicom("RG3_UNCR.dcm"), pip_dicom("CT_small.dcm")]
    outcomes = list(screener.iter_screen(sources, batch_size=2))
    assert [type(o).__name__ for o in outcomes] == ["Screening", "FailedInput", "Screening", "Screening"]
    assert isinstance(outcomes[1], FailedInput) and "broken.png" in outcomes[1].source
    batched = outcomes[0].result.classification.probabilities
    single = chest.result.classification.probabilities
    assert batched == pytest.approx(single, abs=1e-4)


def test_lesion_segmenter_runs_and_measures(tiny_segmenter_bundle, pip_dicom):
    bundle, _ = tiny_segmenter_bundle(task="lesions-xray")
    screener = Screener(lesions=[str(bundle)], runtime="torch", device="cpu", cam=None)
    screening = screener.screen(pip_dicom("RG1_UNCR.dcm"))
    lesions = screening.result.lesions
    assert lesions.ran and lesions.model.name == "tiny-lesions"
    assert screening.lesion_map.shape == (64, 64)
    assert screening.lesion_labels == ["ground_glass_opacity", "consolidation"]
    for label, fraction in lesions.lung_fraction_by_label.items():
        assert label in screening.lesion_labels and 0.0 <= fraction <= 1.0
    for lesion in lesions.lesions:
        x0, y0, x1, y1 = lesion.box
        assert 0 <= x0 < x1 <= 1841 and 0 <= y0 < y1 <= 1955
        assert lesion.area_pixels > 0 and 0.0 <= lesion.score <= 1.0


def test_lesion_segmenter_is_gated_by_the_decision(tiny_segmenter_bundle, pip_dicom):
    bundle, _ = tiny_segmenter_bundle(task="lesions-xray", run_if_positive=["COVID-19"])
    screening = Screener(lesions=[str(bundle)], runtime="torch", device="cpu", cam=None).screen(
        pip_dicom("RG1_UNCR.dcm")
    )
    covid = next(d for d in screening.result.classification.decisions if d.label == "COVID-19")
    assert screening.result.lesions.ran == covid.positive
    if not covid.positive:
        assert "no positive decision for COVID-19" in screening.result.lesions.gate
        assert screening.lesion_map is None


@pytest.mark.slow
def test_compiled_graph_equals_eager(pip_dicom):
    """``--compile`` wraps every torch graph in ``torch.compile``; the classifier's compiled graph gives
    the eager probabilities (one graph, not the whole screener, keeps the compile time down)."""
    from chestlens.preprocess.graph_io import graph_feeds
    from chestlens.preprocess.resize import working_image
    from chestlens.runtime.torch_graph import TorchGraph

    eager = TorchGraph.load("xray3-screener", "classifier", device="cpu")
    unit = working_image(read_image(pip_dicom("RG1_UNCR.dcm")).pixels, 384)
    feeds = graph_feeds(eager.spec.preprocess, unit[None, None], None)
    expected = eager.run(feeds)["probabilities"]
    compiled = eager.compiled()
    assert compiled.graph is not eager.graph
    assert compiled.run(feeds)["probabilities"] == pytest.approx(expected, abs=1e-4)
