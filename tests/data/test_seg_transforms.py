"""Segmentation targets and mask-synchronised augmentation: alignment, ignore label, boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from chestlens.data.label_map import encode_target
from chestlens.data.records import Masks
from chestlens.data.seg_transforms import (
    _SeparableElastic,
    elastic_alpha,
    elastic_step,
    eval_transform,
    make_sample,
    train_transform,
)
from chestlens.data.transforms import resize_unit
from chestlens.errors import ChestlensInputError
from chestlens.preprocess.labels import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_thread")


SEEDS = range(6)


def _layer(rows: slice, cols: slice, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    layer = np.zeros(shape, bool)
    layer[rows, cols] = True
    return layer


def test_encode_binary_union_and_ignore():
    masks = Masks(
        layers={
            "lung_left": _layer(slice(0, 2), slice(0, 1)),
            "lung_right": _layer(slice(0, 2), slice(3, 4)),
        },
        ignore=_layer(slice(3, 4), slice(0, 4)),
    )
    target = encode_target(masks, ("lung", "lung_left", "lung_right"), "binary")  # "lung" absent: fine
    expected = np.array([[1, 0, 0, 1], [1, 0, 0, 1], [0, 0, 0, 0], [255, 255, 255, 255]], np.uint8)
    np.testing.assert_array_equal(target, expected)


def test_encode_multiclass_later_class_wins():
    masks = Masks(
        layers={"ggo": _layer(slice(0, 2), slice(0, 2)), "consolidation": _layer(slice(1, 3), slice(1, 3))},
        ignore=_layer(slice(3, 4), slice(3, 4)),
    )
    target = encode_target(masks, ("ggo", "consolidation"), "multiclass")
    expected = np.array([[1, 1, 0, 0], [1, 2, 2, 0], [0, 2, 2, 0], [0, 0, 0, 255]], np.uint8)
    np.testing.assert_array_equal(target, expected)


def test_encode_rejects_missing_layers_and_shape_mismatch():
    masks = Masks(layers={"infection": np.zeros((4, 4), bool)})
    with pytest.raises(ChestlensInputError, match=r"lack \['consolidation'\]"):
        encode_target(Masks(layers={"ggo": np.zeros((4, 4), bool)}), ("ggo", "consolidation"), "multiclass")
    with pytest.raises(ChestlensInputError, match="lack"):
        encode_target(masks, ("ggo",), "binary")
    with pytest.raises(ChestlensInputError, match="differ in shape"):
        encode_target(
            Masks(layers={"ggo": np.zeros((4, 4), bool)}, ignore=np.zeros((2, 2), bool)), ("ggo",), "binary"
        )


def _square_sample() -> tuple[dict, list[float]]:
    """64 px image: a bright square with its mask (1), an ignore strip (255) and the square's box."""
    image = np.full((64, 64), 0.1, np.float32)
    target = np.zeros((64, 64), np.uint8)
    image[16:36, 24:48] = 0.9
    target[16:36, 24:48] = 1
    target[56:, :] = IGNORE_INDEX
    box = [24.0, 16.0, 48.0, 36.0]
    return make_sample(image, target, boxes=[box], box_labels=[1]), box


@pytest.mark.parametrize("seed", SEEDS)
def test_image_mask_and_box_move_together(seed):
    sample, _ = _square_sample()
    torch.manual_seed(seed)
    out = train_transform(32, brightness=0.0, contrast=0.0, hflip=True, with_boxes=True)(sample)
    image, mask = out["image"][0], out["mask"]
    assert image.shape == mask.shape == (32, 32) and mask.dtype == torch.uint8
    assert set(mask.unique().tolist()) <= {0, 1, IGNORE_INDEX}
    square = mask == 1
    assert square.sum() > 20
    bright = image > 0.5
    assert (bright & square).sum() / (bright | square).sum() > 0.9  # same pixels, up to edge blending
    rows, cols = torch.nonzero(square, as_tuple=True)
    (x0, y0, x1, y1), label = out["boxes"][0].tolist(), out["labels"].tolist()
    assert label == [1]
    assert x0 - 1 <= cols.min() and cols.max() + 1 <= x1 + 1
    assert y0 - 1 <= rows.min() and rows.max() + 1 <= y1 + 1


def test_box_without_rotation_is_the_mask_bounding_box():
    sample, _ = _square_sample()
    torch.manual_seed(0)
    out = train_transform(32, degrees=0.0, with_boxes=True)(sample)
    rows, cols = torch.nonzero(out["mask"] == 1, as_tuple=True)
    mask_box = torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=torch.float32)
    torch.testing.assert_close(out["boxes"][0], mask_box, rtol=0, atol=1.0)


def test_brightness_contrast_touch_the_image_only():
    sample, _ = _square_sample()
    torch.manual_seed(0)
    out = train_transform(64, scale=(1.0, 1.0), ratio=(1.0, 1.0), degrees=0.0, brightness=0.5, contrast=0.5)(
        sample
    )
    torch.testing.assert_close(out["mask"], sample["mask"], rtol=0, atol=0)
    assert not torch.equal(out["image"], sample["image"])


def test_ignore_survives_and_rotation_padding_is_ignore():
    image, target = np.ones((64, 64), np.float32), np.zeros((64, 64), np.uint8)
    target[:8] = IGNORE_INDEX
    transform = train_transform(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), brightness=0.0, contrast=0.0)
    padded = 0
    for seed in SEEDS:
        torch.manual_seed(seed)
        out = transform(make_sample(image, target))
        mask, pixels = out["mask"], out["image"][0]
        assert set(mask.unique().tolist()) <= {0, IGNORE_INDEX}
        assert (mask[:3] == IGNORE_INDEX).float().mean() > 0.8  # the annotated strip (rows 0-3 of 32)
        outside = pixels == 0.0  # wholly outside the rotated frame: the image is filled with 0 ...
        assert (mask[outside] == IGNORE_INDEX).all()  # ... and the mask with the ignore label
        padded += int(outside[4:].sum())
    assert padded > 0, "no draw rotated the image enough to pad it"


def test_eval_transform_matches_the_preprocessing_resize():
    sample, _ = _square_sample()
    out = eval_transform(32)(sample)
    torch.testing.assert_close(out["image"], resize_unit(sample["image"].as_subclass(torch.Tensor), 32))
    assert set(out["mask"].unique().tolist()) == {0, 1, IGNORE_INDEX}
    torch.testing.assert_close(out["boxes"][0], torch.tensor([12.0, 8.0, 24.0, 18.0]))


def test_degenerate_boxes_are_dropped_with_their_labels():
    sample = make_sample(
        np.zeros((32, 32)), np.zeros((32, 32)), boxes=[[4, 4, 4, 9], [2, 2, 20, 20]], box_labels=[7, 3]
    )
    out = train_transform(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), degrees=0.0, with_boxes=True)(sample)
    assert out["labels"].tolist() == [3] and out["boxes"].shape == (1, 4)


@pytest.mark.parametrize(("rms_px", "sigma_px"), [(4.0, 12.0), (2.0, 6.0)])
def test_elastic_alpha_gives_the_rms_displacement_asked_for(rms_px, sigma_px):
    size = 160
    columns = torch.arange(size, dtype=torch.float32).repeat(size, 1)
    step = elastic_step(rms_px, sigma_px, p=1.0)
    shifts = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        moved = step(tv_tensors.Image(columns[None]))[0]
        inner = slice(4 * int(sigma_px), size - 4 * int(sigma_px))  # away from the padded border
        shifts.append((moved - columns)[inner, inner].pow(2).mean().sqrt().item())
    assert np.mean(shifts) == pytest.approx(rms_px, rel=0.15)


def test_elastic_moves_image_and_mask_together_and_keeps_labels():
    image = np.zeros((64, 64), np.float32)
    target = np.zeros((64, 64), np.uint8)
    image[20:44, 16:40], target[20:44, 16:40] = 1.0, 2
    transform = train_transform(
        64,
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        degrees=0.0,
        brightness=0.0,
        contrast=0.0,
        elastic=(3.0, 4.0, 1.0),
    )
    torch.manual_seed(0)
    out = transform(make_sample(image, target))
    mask, pixels = out["mask"], out["image"][0]
    assert not torch.equal(mask, torch.as_tensor(target))  # deformed ...
    assert set(mask.unique().tolist()) <= {0, 2, IGNORE_INDEX}  # ... with no interpolated label values
    inside, outside = pixels[mask == 2], pixels[mask == 0]
    assert inside.mean() > 0.9 and outside.mean() < 0.1  # the image moved with the mask


def test_separable_elastic_field_equals_torchvisions_away_from_the_border():
    """The two 1-D passes give torchvision's 2-D-blurred field from the same noise (borders differ only in
    padding: replicated here, reflected there)."""
    image = [tv_tensors.Image(torch.zeros(1, 96, 128))]
    settings = {"alpha": elastic_alpha(3.0, 5.0), "sigma": 5.0}
    torch.manual_seed(3)
    reference = v2.ElasticTransform(**settings).make_params(image)["displacement"]
    torch.manual_seed(3)
    separable = _SeparableElastic(**settings).make_params(image)["displacement"]
    assert separable.shape == reference.shape == (1, 96, 128, 2)
    inner = slice(21, -21)  # the 41-tap kernel reaches 20 px
    torch.testing.assert_close(separable[:, inner, inner], reference[:, inner, inner], rtol=1e-4, atol=1e-6)
