"""Mask R-CNN detectors: registry, grey input, local backbone weights, region features, detector bundles."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torchvision.ops import FrozenBatchNorm2d

from chestlens.data.instances import instances_from_detections, instances_from_masks
from chestlens.data.records import Masks
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.detection import evaluate_detections
from chestlens.models.bundle import load_bundle, save_bundle
from chestlens.models.detection import (
    create_detector,
    detections_with_features,
    get_detector_config,
    list_detectors,
)
from chestlens.models.spec import BundleSpec
from chestlens.preprocess.spec import PreprocessSpec

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = ["background", "ggo", "consolidation"]
# Tiny and fast: 64 px images, few proposals and sampled RoIs.
TINY = {
    "min_size": 64,
    "max_size": 64,
    "rpn_pre_nms_top_n_train": 100,
    "rpn_post_nms_top_n_train": 50,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 30,
    "box_batch_size_per_image": 32,
    "box_detections_per_img": 12,
}


def _target() -> dict[str, torch.Tensor]:
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 20:40, 10:30] = 1
    return {"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0]]), "labels": torch.tensor([2]), "masks": masks}


def test_registry():
    assert list_detectors() == [
        "maskrcnn_efficientnet_lite0_fpn",
        "maskrcnn_mobilenet_v3_fpn",
        "maskrcnn_resnet18_fpn",
        "maskrcnn_resnet34_fpn",
        "maskrcnn_resnet50_fpn",
    ]
    assert get_detector_config("maskrcnn_resnet18_fpn").backbone == "resnet18"
    with pytest.raises(ChestlensInputError, match="unknown detector 'yolo'"):
        create_detector("yolo", 3)


@pytest.mark.parametrize(
    "name",
    [
        "maskrcnn_resnet18_fpn",
        "maskrcnn_mobilenet_v3_fpn",
        "maskrcnn_resnet50_fpn",
        "maskrcnn_efficientnet_lite0_fpn",
    ],
)
def test_train_and_eval_forward(name, offline):
    torch.manual_seed(0)
    model = create_detector(name, len(LABELS), **TINY)
    losses = model([torch.rand(1, 64, 64)], [_target()])
    assert set(losses) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
    }
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(1, 64, 64), torch.rand(1, 80, 64)])
    assert len(out) == 2
    for detections, (h, w) in zip(out, [(64, 64), (80, 64)], strict=True):
        n = len(detections["boxes"])
        assert detections["boxes"].shape == (n, 4) and detections["scores"].shape == (n,)
        assert detections["masks"].shape == (n, 1, h, w)
        assert set(detections["labels"].tolist()) <= {1, 2}
        assert torch.all(detections["scores"][:-1] >= detections["scores"][1:])


def test_grey_input_is_one_channel_end_to_end():
    grey = create_detector("maskrcnn_resnet18_fpn", 3, **TINY)
    assert grey.backbone.body.conv1.in_channels == 1
    assert grey.transform.image_mean == pytest.approx([0.449]) and grey.transform.image_std == pytest.approx(
        [0.226]
    )
    with pytest.raises(ChestlensInputError, match=r"shape \(3, 64, 64\); expected \(1, H, W\)"):
        grey.eval()([torch.rand(3, 64, 64)])
    rgb = create_detector("maskrcnn_mobilenet_v3_fpn", 3, in_chans=3, **TINY)
    assert rgb.backbone.body["0"][0].in_channels == 3 and len(rgb.transform.image_mean) == 3
    with pytest.raises(ChestlensInputError, match="in_chans must be 1 or 3"):
        create_detector("maskrcnn_resnet18_fpn", 3, in_chans=2)


def test_backbone_from_local_checkpoint(tmp_path, offline):
    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None, num_classes=7).state_dict()  # RGB, another head
    path = tmp_path / "r18.safetensors"
    save_file(source, str(path))
    model = create_detector("maskrcnn_resnet18_fpn", 3, backbone_weights=path, **TINY)
    body = model.backbone.body
    torch.testing.assert_close(body.conv1.weight, source["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(body.layer3[1].conv2.weight, source["layer3.1.conv2.weight"])
    torch.testing.assert_close(body.layer4[0].bn1.running_var, source["layer4.0.bn1.running_var"])
    assert isinstance(body.bn1, FrozenBatchNorm2d)  # pretrained: torchvision's frozen statistics
    # trainable_layers defaults to 3 with weights: layer2-4 train, conv1 and layer1 are frozen
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad and body.layer4[1].conv2.weight.requires_grad
    del source["layer1.0.conv1.weight"]
    save_file(source, str(path))
    with pytest.raises(ChestlensInputError, match=r"missing keys \['layer1.0.conv1.weight'\]"):
        create_detector("maskrcnn_resnet18_fpn", 3, backbone_weights=path)
    with pytest.raises(ChestlensInputError, match="checkpoint file not found"):
        create_detector("maskrcnn_resnet18_fpn", 3, backbone_weights=tmp_path / "missing.pth")


def test_random_backbone_trains_every_layer_with_batch_norm():
    model = create_detector("maskrcnn_resnet18_fpn", 3, **TINY)
    assert isinstance(model.backbone.body.bn1, torch.nn.BatchNorm2d)
    assert all(p.requires_grad for p in model.backbone.parameters())
    with pytest.raises(ChestlensInputError, match="freezes randomly initialised layers"):
        create_detector("maskrcnn_resnet18_fpn", 3, trainable_layers=3)


def test_region_features_match_detections():
    torch.manual_seed(0)
    model = create_detector("maskrcnn_resnet18_fpn", 3, **TINY).eval()
    images = [torch.rand(1, 64, 64), torch.rand(1, 64, 64)]
    with torch.no_grad():
        plain = model(images)
        rich = detections_with_features(model, images)
        top = detections_with_features(model, images, k=3)
        # recompute the feature of each kept box on its own (64 px input: the transform keeps the scale)
        image_list, _ = model.transform(images)
        maps = model.backbone(image_list.tensors)
    dim = get_detector_config("maskrcnn_resnet18_fpn").representation_size
    for i, (a, b) in enumerate(zip(plain, rich, strict=True)):
        assert len(a["boxes"]) > 3
        for key in ("boxes", "labels", "scores", "masks"):
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)
        assert b["features"].shape == (len(a["boxes"]), dim)
        for j in (0, len(a["boxes"]) - 1):
            single = [torch.zeros(0, 4)] * len(images)
            single[i] = a["boxes"][j : j + 1]
            with torch.no_grad():
                alone = model.roi_heads.box_head(
                    model.roi_heads.box_roi_pool(maps, single, image_list.image_sizes)
                )
            torch.testing.assert_close(b["features"][j], alone[0], rtol=1e-4, atol=1e-5)
        assert len(top[i]["boxes"]) == 3 and top[i]["features"].shape == (3, dim)
        torch.testing.assert_close(top[i]["features"], b["features"][:3])
    with pytest.raises(ChestlensInputError, match="eval mode"):
        detections_with_features(model.train(), images)


def test_predictions_evaluate_as_coco_instances():
    torch.manual_seed(0)
    model = create_detector("maskrcnn_mobilenet_v3_fpn", len(LABELS), **TINY).eval()
    with torch.no_grad():
        outputs = model([torch.rand(1, 64, 64), torch.rand(1, 64, 64)])
    predicted = [instances_from_detections(out, LABELS[1:]) for out in outputs]
    truth = [instances_from_masks(Masks({"ggo": _target()["masks"][0].bool().numpy()}), ["ggo"]), []]
    report = evaluate_detections(truth, predicted, [(64, 64)] * 2, LABELS[1:])
    assert report.per_class[0].n_pred == sum(int((out["labels"] == 1).sum()) for out in outputs)
    assert 0.0 <= report.segm.ap50.value <= 1.0 and 0.0 <= report.bbox.map.value <= 1.0


def test_detector_bundle_round_trip(tmp_path, offline):
    torch.manual_seed(0)
    weights = tmp_path / "r18.safetensors"
    save_file(torchvision.models.resnet18(weights=None).state_dict(), str(weights))
    model = create_detector("maskrcnn_resnet18_fpn", len(LABELS), backbone_weights=weights, **TINY).eval()
    spec = BundleSpec(
        name="test-det",
        version="0.0.1",
        kind="detector",
        task="lesions-ct",
        architecture="maskrcnn_resnet18_fpn",
        architecture_kwargs=model.bundle_kwargs,
        labels=LABELS,
        preprocess=PreprocessSpec(
            input_size=64, mean=model.transform.image_mean, std=model.transform.image_std
        ),
    )
    assert model.bundle_kwargs["frozen_bn"] is True
    restored = load_bundle(save_bundle(spec, model.state_dict(), tmp_path / "det")).build_model()
    assert not restored.training
    image = [torch.rand(1, 64, 64)]
    with torch.no_grad():
        expected, got = model(image)[0], restored(image)[0]
    for key in ("boxes", "labels", "scores", "masks"):
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    bad = spec.model_copy(update={"labels": ["ggo", "consolidation"]})
    with pytest.raises(ChestlensInputError, match="detector labels must be"):
        load_bundle(save_bundle(bad, model.state_dict(), tmp_path / "bad")).build_model()
