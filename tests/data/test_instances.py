"""Instances from semantic masks (connected components), Mask R-CNN targets and their collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chestlens.data.annotations import Instance
from chestlens.data.instances import (
    collate_detection,
    detection_target,
    instances_from_detections,
    instances_from_masks,
)
from chestlens.data.records import Masks
from chestlens.data.registry import load_samples
from chestlens.errors import ChestlensInputError

pytestmark = pytest.mark.usefixtures("one_thread")


CLASSES = ("ggo", "consolidation")


def _masks() -> Masks:
    ggo = np.zeros((12, 16), dtype=bool)
    ggo[1:4, 1:4] = True  # 9 px
    ggo[4, 4] = True  # touches the square at a corner only: same component under 8-connectivity
    ggo[8:10, 10:15] = True  # 10 px
    ggo[0, 15] = True  # 1 px
    consolidation = np.zeros((12, 16), dtype=bool)
    consolidation[6:11, 1:3] = True  # 10 px
    return Masks(layers={"ggo": ggo, "consolidation": consolidation, "infection": ggo | consolidation})


def test_components_use_8_connectivity_and_min_area():
    instances = instances_from_masks(_masks(), CLASSES, min_area_px=10)
    assert [(i.label, int(i.mask.sum()), i.box) for i in instances] == [
        ("ggo", 10, (1.0, 1.0, 5.0, 5.0)),  # square plus its diagonal neighbour
        ("ggo", 10, (10.0, 8.0, 15.0, 10.0)),
        ("consolidation", 10, (1.0, 6.0, 3.0, 11.0)),
    ]
    assert all(i.score is None and i.mask.shape == (12, 16) for i in instances)
    assert len(instances_from_masks(_masks(), CLASSES, min_area_px=1)) == 4
    assert [i.label for i in instances_from_masks(_masks(), ("consolidation",))] == ["consolidation"]


def test_ignored_pixels_belong_to_no_instance():
    masks = _masks()
    ignore = np.zeros((12, 16), dtype=bool)
    ignore[8:10, 10:12] = True  # 4 of the second GGO component's 10 pixels
    instances = instances_from_masks(Masks(masks.layers, ignore), ("ggo",), min_area_px=5)
    assert [int(i.mask.sum()) for i in instances] == [10, 6]
    assert not any((i.mask & ignore).any() for i in instances)


def test_missing_or_3d_layers_are_refused():
    with pytest.raises(ChestlensInputError, match="no 'lung' layer"):
        instances_from_masks(_masks(), ("lung",))
    with pytest.raises(ChestlensInputError, match="2-D"):
        instances_from_masks(Masks({"ggo": np.zeros((2, 4, 4), dtype=bool)}), ("ggo",))


def test_detection_target_format():
    instances = instances_from_masks(_masks(), CLASSES, min_area_px=10)
    target = detection_target(instances, CLASSES, shape=(12, 16))
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (3, 4)
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [1, 1, 2]
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (3, 12, 16)
    assert target["boxes"][2].tolist() == [1.0, 6.0, 3.0, 11.0]
    np.testing.assert_array_equal(target["masks"][2].numpy().astype(bool), instances[2].mask)
    empty = detection_target([], CLASSES, shape=(12, 16))
    assert empty["boxes"].shape == (0, 4) and empty["boxes"].dtype == torch.float32
    assert empty["labels"].shape == (0,) and empty["labels"].dtype == torch.int64
    assert empty["masks"].shape == (0, 12, 16) and empty["masks"].dtype == torch.uint8


def test_detection_target_refuses_bad_instances():
    box_only = Instance("ggo", None, (0.0, 0.0, 2.0, 2.0))
    with pytest.raises(ChestlensInputError, match="mask shape None"):
        detection_target([box_only], CLASSES, shape=(12, 16))
    other = Instance("lung", np.ones((12, 16), dtype=bool), (0.0, 0.0, 16.0, 12.0))
    with pytest.raises(ChestlensInputError, match="'lung' is not one of"):
        detection_target([other], CLASSES, shape=(12, 16))


def test_model_outputs_become_predicted_instances():
    masks = torch.zeros(2, 1, 12, 16)
    masks[0, 0, 2:5, 3:7] = 0.9
    masks[1, 0, 2:5, 3:7] = 0.5  # not above the threshold
    detection = {
        "boxes": torch.tensor([[2.5, 1.5, 7.5, 5.5], [0.0, 0.0, 4.0, 4.0]]),
        "labels": torch.tensor([2, 1]),
        "scores": torch.tensor([0.75, 0.25]),
        "masks": masks,
    }
    instances = instances_from_detections(detection, CLASSES)
    assert [(i.label, i.box, i.score) for i in instances] == [
        ("consolidation", (2.5, 1.5, 7.5, 5.5), 0.75),
        ("ggo", (0.0, 0.0, 4.0, 4.0), 0.25),
    ]
    assert (
        instances[0].mask.shape == (12, 16) and instances[0].mask.sum() == 12 and not instances[1].mask.any()
    )
    del detection["masks"]
    assert instances_from_detections(detection, CLASSES)[0].mask is None


def test_collate_keeps_lists():
    a = (torch.zeros(1, 8, 8), detection_target([], CLASSES, shape=(8, 8)))
    b = (torch.zeros(1, 6, 10), detection_target([], CLASSES, shape=(6, 10)))
    images, targets = collate_detection([a, b])
    assert [im.shape[-2:] for im in images] == [(8, 8), (6, 10)]
    assert targets[1]["masks"].shape == (0, 6, 10)


def test_torchvision_mask_rcnn_trains_on_empty_and_non_empty_targets():
    from chestlens.models.detection import create_detector

    torch.manual_seed(0)
    model = create_detector(
        "maskrcnn_resnet18_fpn",
        len(CLASSES) + 1,
        min_size=64,
        max_size=64,
        rpn_post_nms_top_n_train=50,
        box_batch_size_per_image=32,
    ).train()
    masks = np.zeros((64, 64), dtype=bool)
    masks[10:30, 12:40] = True
    instances = instances_from_masks(Masks({"ggo": masks, "consolidation": np.zeros_like(masks)}), CLASSES)
    batch = [
        (torch.rand(1, 64, 64), detection_target(instances, CLASSES, shape=(64, 64))),
        (torch.rand(1, 64, 64), detection_target([], CLASSES, shape=(64, 64))),
    ]
    losses = model(*collate_detection(batch))
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} <= set(
        losses
    )
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()


@pytest.mark.shared_data
def test_instances_from_real_infnet_masks(source_dir):
    samples = [s for s in load_samples(source_dir("infnet-covid-semiseg"), ["infnet"]) if s.masks is not None]
    multiclass = [s for s in samples if "ggo" in s.masks.classes][:12]
    assert len(multiclass) == 12
    min_area = 10
    counts = []
    for sample in multiclass:
        masks = sample.masks.load()
        instances = instances_from_masks(masks, CLASSES, min_area_px=min_area)
        counts.append(len(instances))
        for name in CLASSES:
            layer = masks.layers[name]
            union = np.zeros_like(layer)
            for instance in (i for i in instances if i.label == name):
                assert instance.mask.sum() >= min_area and not (union & instance.mask).any()
                union |= instance.mask
            # what is left out is exactly the components under min_area
            left_out = instances_from_masks(Masks({name: layer & ~union}), (name,), min_area_px=1)
            assert all(i.mask.sum() < min_area for i in left_out)
            np.testing.assert_array_equal(union | _union(left_out, layer.shape), layer)
        target = detection_target(instances, CLASSES, shape=masks.layers["ggo"].shape)
        assert torch.all(target["boxes"][:, 2:] > target["boxes"][:, :2])
    # MedSeg slices hold a few to a few tens of lesions each (about 13 per slice over all 83)
    assert sum(counts) >= 12 and max(counts) <= 80


def _union(instances: list[Instance], shape: tuple[int, int]) -> np.ndarray:
    union = np.zeros(shape, dtype=bool)
    for instance in instances:
        union |= instance.mask
    return union
