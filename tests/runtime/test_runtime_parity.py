"""ONNX Runtime and PyTorch run the same graphs: the same probabilities, masks and heatmaps on real images."""

from __future__ import annotations

import numpy as np
import pytest

from chestlens.pipeline.screener import Screener

#: Real radiographs of several sources and formats (16-bit PNG, 8-bit JPEG/PNG), under the data root.
REAL_IMAGES = (
    "kermany-chest-xray/chest_xray/train/NORMAL/IM-0640-0001-0001.jpeg",
    "covid-chestxray-dataset/images/covid-19-pneumonia-22-day2-pa.png",
    "covid-chestxray-dataset/images/16745_4_1.png",
)


@pytest.fixture(scope="module")
def runtimes() -> tuple[Screener, Screener]:
    return Screener(), Screener(runtime="torch", device="cpu")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def assert_same_screening(onnx, torch_) -> None:
    a, b = onnx.result, torch_.result
    assert a.runtime == "onnx" and b.runtime == "torch"
    assert a.gate.accepted == b.gate.accepted
    if a.classification is not None:
        pa, pb = a.classification.probabilities, b.classification.probabilities
        assert max(abs(pa[k] - pb[k]) for k in pa) <= 1e-4
        assert a.classification.top_label == b.classification.top_label
    if onnx.heatmap is not None:
        assert np.abs(onnx.heatmap - torch_.heatmap).max() <= 1e-3
    if onnx.lung_mask is not None:
        assert dice(onnx.lung_mask, torch_.lung_mask) >= 0.999
    if onnx.lesion_map is not None:
        assert dice(onnx.lesion_map > 0, torch_.lesion_map > 0) >= 0.999


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "CT_small.dcm", "RG3_UNCR.dcm"])
def test_runtimes_agree_on_pip_dicom(runtimes, pip_dicom, name):
    onnx, torch_ = (screener.screen(pip_dicom(name)) for screener in runtimes)
    assert_same_screening(onnx, torch_)


@pytest.mark.parametrize("relative", REAL_IMAGES)
def test_runtimes_agree_on_real_radiographs(runtimes, shared_data, relative):
    path = shared_data / relative
    onnx, torch_ = (screener.screen(path) for screener in runtimes)
    assert onnx.result.gate.accepted
    assert_same_screening(onnx, torch_)
