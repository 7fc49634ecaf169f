"""ONNX export: one self-contained file per model, sidecar from the bundle, parity with PyTorch on real
images, fp16 / int8 variants judged by AUC, size and speed, any input size, CAM and segmenter outputs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from chestlens.export.bundle_export import export_bundle
from chestlens.export.images import sample_set
from chestlens.export.verify import FP32_TOLERANCE, ort_session
from chestlens.models.bundle import load_bundle
from chestlens.models.spec import read_spec

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def xray_units(shared_data):
    """Six real radiographs of different sizes as unit images, with made-up class indices."""
    spec = read_spec("xray3-screener")
    found = sample_set(spec, shared_data, 6)
    return replace(found, targets=np.array([0, 1, 2, 0, 1, 2]))


def test_classifier_export_variants_and_sidecar(tiny_classifier_bundle, xray_units, tmp_path, one_thread):
    bundle = load_bundle(tiny_classifier_bundle(temperature=1.7))
    tmp_path = tmp_path / "onnx"
    report = export_bundle(
        bundle, tmp_path, xray_units, fp16=True, calibration=replace(xray_units, units=xray_units.units[:3])
    )
    assert report.passed and report.checks["fp32"]["max_abs_diff_probabilities"] < FP32_TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "t.fp16.json", "t.fp16.onnx", "t.int8.json", "t.int8.onnx", "t.json", "t.onnx"
    ]  # fmt: skip
    sidecar = json.loads((tmp_path / "t.json").read_text())
    assert sidecar["labels"] == bundle.spec.labels and sidecar["temperature"] == 1.7
    assert sidecar["preprocess"] == bundle.spec.preprocess.model_dump(mode="json")
    assert sidecar["verification"]["passed"] and "Research use only" in sidecar["disclaimer"]
    for variant in ("fp16", "int8"):
        check = json.loads((tmp_path / f"t.{variant}.json").read_text())["verification"]
        assert {"macro_auc_change", "usable", "size_ratio_vs_fp32", "speedup_vs_fp32"} <= set(check)
        assert check["usable"] == (check["macro_auc_change"] >= -0.005)
    assert report.checks["fp16"]["size_ratio_vs_fp32"] < 0.6
    # any input size, any batch; CAM maps in [0, 1] at the input size; probabilities calibrated
    session = ort_session(tmp_path / "t.onnx", threads=1)
    for shape in [(1, 1, 32, 32), (2, 1, 97, 301)]:
        logits, probabilities, cam = session.run(None, {"image": np.random.rand(*shape).astype(np.float32)})
        shifted = np.exp(logits / 1.7 - (logits / 1.7).max(1, keepdims=True))
        np.testing.assert_allclose(probabilities, shifted / shifted.sum(1, keepdims=True), atol=1e-5)
        assert cam.shape == (shape[0], 3, 32, 32) and cam.min() >= 0 and cam.max() <= 1 + 1e-6


def test_web_build_exports_the_shipped_models(web_build):
    """The web build's models are the shipped bundles, single-file, verified against PyTorch."""
    index = json.loads((web_build / "models.json").read_text())
    assert set(index["models"]) == {"classifier", "lungs"}
    for role, name in (("classifier", "xray3-screener"), ("lungs", "lungs-segmenter")):
        sidecar = json.loads((web_build / index["models"][role]["sidecar"]).read_text())
        assert sidecar["name"] == name and sidecar["bundle_weights_sha256"] == read_spec(name).weights_sha256
        assert sidecar["verification"]["max_abs_diff_probabilities"] < FP32_TOLERANCE
    assert not list(web_build.rglob("*.data")), "external-data files must not exist"
    assert {p.name for p in (web_build / "vendor").iterdir()} == {
        "ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "dicomParser.min.js"
    }  # fmt: skip
    assert index["build"] in (web_build / "sw.js").read_text()
    assert all((web_build / f).is_file() for f in index["files"] if f != "./")


@pytest.mark.parametrize("roi", ["crop", "mask"])
def test_lung_field_classifier_exports_with_the_same_crop_and_mask(
    tiny_classifier_bundle, xray_units, tmp_path, roi
):
    from chestlens.preprocess.spec import PreprocessSpec

    preprocess = PreprocessSpec(input_size=64, mean=[0.5], std=[0.5], lung_roi=roi, lung_margin=0.08)
    bundle = load_bundle(tiny_classifier_bundle(preprocess=preprocess))
    report = export_bundle(bundle, tmp_path / "onnx", xray_units)
    assert report.passed, report.checks["fp32"]
    sidecar = json.loads((tmp_path / "onnx" / "t.json").read_text())
    assert sidecar["input"]["names"] == (["image", "lungs"] if roi == "mask" else ["image"])
    assert sidecar["preprocess"]["lung_roi"] == roi and sidecar["lung_roi"]["mask_radius"] == 2


def test_clahe_classifier_export_is_refused_in_one_line(tiny_classifier_bundle, tmp_path):
    from chestlens.errors import ChestlensInputError
    from chestlens.export.onnx_export import export_fp32
    from chestlens.preprocess.spec import PreprocessSpec

    preprocess = PreprocessSpec(input_size=32, mean=[0.5], std=[0.5], equalise="clahe")
    bundle = load_bundle(tiny_classifier_bundle(preprocess=preprocess))
    with pytest.raises(ChestlensInputError, match="equalise='clahe' has no ONNX graph"):
        export_fp32(bundle, tmp_path / "t.onnx")
