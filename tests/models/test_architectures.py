"""Tests every registered architecture must pass: forward, grey input, bundle save/load (fp32, fp16)."""

from __future__ import annotations

import json

import pytest
import torch

from chestlens.models.bundle import load_bundle, save_bundle
from chestlens.models.factory import create_model
from chestlens.models.registry import get_model_config, list_models
from chestlens.models.spec import BundleSpec
from chestlens.preprocess.spec import PreprocessSpec

LABELS = ["COVID-19", "pneumonia", "normal"]


@pytest.fixture(scope="module", params=list_models())
def built(request):
    torch.manual_seed(0)
    model = create_model(request.param, num_classes=len(LABELS), in_chans=1, weights=None).eval()
    return request.param, model


def _spec(name: str) -> BundleSpec:
    cfg = get_model_config(name)
    grey_mean = [sum(cfg.mean) / 3]
    grey_std = [sum(cfg.std) / 3]
    return BundleSpec(
        name=f"test-{name}",
        version="0.0.1",
        kind="classifier",
        task="xray3",
        architecture=name,
        labels=LABELS,
        preprocess=PreprocessSpec(input_size=64, in_chans=1, mean=grey_mean, std=grey_std),
    )


def test_forward_grey_input(built):
    name, model = built
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, len(LABELS))
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1, f"{name}: first convolution not adapted to grey input"


def test_cam_layer_exists(built):
    name, model = built
    layer = model.get_submodule(get_model_config(name).cam_layer)
    feats = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: feats.setdefault("x", out))
    model(torch.zeros(1, 1, 64, 64))
    handle.remove()
    assert feats["x"].ndim == 4, f"{name}: CAM layer must output a (B, C, H, W) feature map"


def test_bundle_round_trip(built, tmp_path):
    name, model = built
    x = torch.rand(2, 1, 64, 64)
    path = save_bundle(_spec(name), model.state_dict(), tmp_path / "b")
    stored = json.loads((path / "bundle.json").read_text())
    assert stored["architecture"] == name and stored["weights_sha256"]
    restored = load_bundle(path).build_model()
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=1e-6)


def test_fp16_bundle_close(built, tmp_path):
    name, model = built
    x = torch.rand(2, 1, 64, 64)
    path = save_bundle(_spec(name), model.state_dict(), tmp_path / "half", fp16=True)
    assert load_bundle(path).spec.weights_dtype == "float16"
    with torch.no_grad():
        ref = model(x).softmax(1)
        half = load_bundle(path).build_model()(x).softmax(1)
    assert (ref - half).abs().max() < 2e-2
