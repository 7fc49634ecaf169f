"""Segmentation losses: hand-computed values, perfect predictions, the ignore label, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from chestlens.train.seg_losses import BCEDiceLoss, DiceCELoss, DiceFocalLoss, FocalLoss

pytestmark = pytest.mark.usefixtures("one_thread")


LN2 = math.log(2.0)


def test_bce_dice_by_hand():
    # p = 0.5 everywhere, 2 of 4 pixels positive: BCE = ln 2; Dice = (2*1 + 1) / (2 + 2 + 1) = 3/5.
    loss = BCEDiceLoss()(torch.zeros(1, 1, 2, 2), torch.tensor([[[1, 0], [1, 0]]]))
    assert loss.item() == pytest.approx(LN2 + 0.4, abs=1e-6)


def test_dice_ce_by_hand():
    # 2 classes, p = 0.5, targets [1, 0]: CE = ln 2; class-1 Dice = (2*0.5 + 1) / (1 + 1 + 1) = 2/3.
    logits, target = torch.zeros(1, 2, 1, 2), torch.tensor([[[1, 0]]])
    assert DiceCELoss()(logits, target).item() == pytest.approx(LN2 + 1 / 3, abs=1e-6)
    # with background: class-0 Dice is also 2/3
    assert DiceCELoss(include_background=True)(logits, target).item() == pytest.approx(LN2 + 1 / 3, abs=1e-6)


def test_focal_by_hand_and_reduces_to_cross_entropy():
    logits, target = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, dtype=torch.long)
    assert FocalLoss(gamma=2.0)(logits, target).item() == pytest.approx(0.25 * LN2, abs=1e-6)
    assert FocalLoss(gamma=2.0, alpha=0.25)(logits, target).item() == pytest.approx(0.0625 * LN2, abs=1e-6)
    torch.manual_seed(0)
    binary, multi = torch.randn(2, 1, 4, 4), torch.randn(2, 3, 4, 4)
    t2, t3 = torch.randint(0, 2, (2, 4, 4)), torch.randint(0, 3, (2, 4, 4))
    expected = F.binary_cross_entropy_with_logits(binary[:, 0], t2.float())
    torch.testing.assert_close(FocalLoss(gamma=0.0)(binary, t2), expected)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(multi, t3), F.cross_entropy(multi, t3))


def test_dice_focal_is_focal_plus_dice_and_reduces_to_dice_ce_and_bce_dice():
    """At ``gamma = 0`` the focal term is the cross-entropy, so Dice + focal equals Dice + CE (multiclass)
    and BCE + Dice (binary); at ``gamma = 2`` it is the focal loss plus the same Dice term."""
    torch.manual_seed(0)
    binary, multi = torch.randn(2, 1, 6, 6), torch.randn(2, 3, 6, 6)
    t2, t3 = torch.randint(0, 2, (2, 6, 6)), torch.randint(0, 3, (2, 6, 6))
    torch.testing.assert_close(DiceFocalLoss(gamma=0.0)(multi, t3), DiceCELoss()(multi, t3))
    torch.testing.assert_close(DiceFocalLoss(gamma=0.0)(binary, t2), BCEDiceLoss()(binary, t2))
    dice_term = DiceCELoss()(multi, t3) - F.cross_entropy(multi, t3)
    torch.testing.assert_close(DiceFocalLoss()(multi, t3), FocalLoss()(multi, t3) + dice_term)


def _perfect(target: torch.Tensor, channels: int) -> torch.Tensor:
    if channels == 1:
        return (target[:, None].float() * 2 - 1) * 30.0
    return F.one_hot(target, channels).permute(0, 3, 1, 2).float() * 30.0


@pytest.mark.parametrize(
    ("loss", "channels"),
    [(BCEDiceLoss(), 1), (DiceCELoss(), 3), (FocalLoss(), 1), (FocalLoss(), 3), (DiceFocalLoss(), 3)],
)
def test_perfect_prediction_near_zero(loss, channels):
    torch.manual_seed(0)
    target = torch.randint(0, channels if channels > 1 else 2, (2, 8, 8))
    assert loss(_perfect(target, channels), target).item() < 1e-6


@pytest.mark.parametrize(
    ("loss", "channels"),
    [
        (BCEDiceLoss(), 1),
        (DiceCELoss(), 3),
        (FocalLoss(alpha=0.25), 1),
        (FocalLoss(), 3),
        (DiceFocalLoss(), 1),
        (DiceFocalLoss(), 3),
    ],
)
def test_ignored_pixels_change_nothing(loss, channels):
    torch.manual_seed(0)
    target = torch.randint(0, max(channels, 2), (2, 8, 8))
    logits = torch.randn(2, channels, 8, 8)
    ignore = torch.zeros(2, 8, 8, dtype=torch.bool)
    ignore[:, :3] = True
    labelled = target.masked_fill(ignore, 255)
    reference = loss(logits, labelled)
    garbage = logits.clone()
    garbage[ignore[:, None].expand_as(garbage)] = torch.tensor(
        [1e4, -1e4, float("inf"), float("nan")]
    ).repeat(12 * channels)
    garbage.requires_grad_(True)
    via_label = loss(garbage, labelled)
    via_mask = loss(garbage, target, ignore=ignore)  # the same pixels through the boolean argument
    torch.testing.assert_close(via_label, reference)
    torch.testing.assert_close(via_mask, reference)
    via_label.backward()
    assert torch.isfinite(garbage.grad).all()
    assert (garbage.grad[ignore[:, None].expand_as(garbage)] == 0).all()
    assert garbage.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("loss", "channels"), [(BCEDiceLoss(), 1), (DiceCELoss(), 2), (FocalLoss(), 2), (DiceFocalLoss(), 2)]
)
def test_all_ignored_gives_zero_with_finite_gradient(loss, channels):
    logits = torch.randn(1, channels, 4, 4, requires_grad=True)
    value = loss(logits, torch.full((1, 4, 4), 255))
    value.backward()
    assert torch.isfinite(logits.grad).all()
    assert value.item() == pytest.approx(0.0, abs=1e-6)  # BCEDice: Dice of empty vs empty is eps/eps = 1


def test_binary_target_with_channel_axis_and_channel_checks():
    logits, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[1, 0], [1, 0]]])
    torch.testing.assert_close(BCEDiceLoss()(logits, target[:, None]), BCEDiceLoss()(logits, target))
    with pytest.raises(ValueError, match="binary"):
        BCEDiceLoss()(torch.zeros(1, 2, 2, 2), target)
    with pytest.raises(ValueError, match="multiclass"):
        DiceCELoss()(logits, target)
