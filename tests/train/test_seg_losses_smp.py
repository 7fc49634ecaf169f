"""The segmentation losses against their formulas before segmentation_models_pytorch took a part of them.

The reference below is the hand-written code ``chestlens.train.seg_losses`` had (values and gradients
must agree within 1e-5 on random inputs with the ignore label, the boolean ``ignore`` mask, empty masks
and a wholly ignored batch). The last tests pin the two definitions of smp that differ from ours, the
reason the soft Dice and the multiclass focal loss stay hand-written (see the module docstring).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import DiceLoss as SmpDiceLoss
from segmentation_models_pytorch.losses import FocalLoss as SmpFocalLoss

from chestlens.train.seg_losses import DICE_EPS, BCEDiceLoss, DiceCELoss, FocalLoss

pytestmark = pytest.mark.usefixtures("one_thread")

IGNORE = 255
TOL = {"atol": 1e-5, "rtol": 1e-5}


# ----------------------------------------------------------------------------- the reference
def ref_prepare(logits, target, ignore):
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    valid = target != IGNORE
    if ignore is not None:
        valid = valid & ~ignore.reshape(valid.shape).bool()
    return logits.masked_fill(~valid[:, None], 0.0), torch.where(valid, target, 0).long(), valid


def ref_valid_mean(values, valid):
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp_min(1)


def ref_soft_dice(probs, onehot, eps=DICE_EPS):
    dims = (0, 2, 3)
    return (2.0 * (probs * onehot).sum(dims) + eps) / (probs.sum(dims) + onehot.sum(dims) + eps)


def ref_bce_dice(logits, target, ignore=None, bce_weight=1.0, dice_weight=1.0):
    logits, target, valid = ref_prepare(logits, target, ignore)
    t = target[:, None].float()
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")[:, 0]
    dice = ref_soft_dice(torch.sigmoid(logits) * valid[:, None], t)[0]
    return bce_weight * ref_valid_mean(bce, valid) + dice_weight * (1.0 - dice)


def ref_dice_ce(logits, target, ignore=None, include_background=False):
    logits, target, valid = ref_prepare(logits, target, ignore)
    ce = F.cross_entropy(logits, target, reduction="none")
    mask = valid[:, None]
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2) * mask
    dice = ref_soft_dice(logits.softmax(1) * mask, onehot)
    dice = dice if include_background else dice[1:]
    return ref_valid_mean(ce, valid) + (1.0 - dice.mean())


def ref_focal(logits, target, ignore=None, gamma=2.0, alpha=None):
    logits, target, valid = ref_prepare(logits, target, ignore)
    if logits.shape[1] == 1:
        log_pt = -F.binary_cross_entropy_with_logits(logits[:, 0], target.float(), reduction="none")
    else:
        log_pt = -F.cross_entropy(logits, target, reduction="none")
    loss = -((-torch.expm1(log_pt)) ** gamma) * log_pt
    if alpha is not None:
        loss = loss * torch.where(target != 0, alpha, 1.0 - alpha)
    return ref_valid_mean(loss, valid)


# ----------------------------------------------------------------------------- random cases
CASES = {
    "bce_dice": (BCEDiceLoss(), ref_bce_dice, 1),
    "bce_dice weighted": (
        BCEDiceLoss(bce_weight=0.3, dice_weight=2.0),
        lambda *a: ref_bce_dice(*a, 0.3, 2.0),
        1,
    ),
    "dice_ce": (DiceCELoss(), ref_dice_ce, 3),
    "dice_ce with background": (
        DiceCELoss(include_background=True),
        lambda *a: ref_dice_ce(*a, include_background=True),
        4,
    ),
    "focal binary": (FocalLoss(), ref_focal, 1),
    "focal binary alpha": (FocalLoss(alpha=0.25), lambda *a: ref_focal(*a, alpha=0.25), 1),
    "focal binary gamma 0": (FocalLoss(gamma=0.0), lambda *a: ref_focal(*a, gamma=0.0), 1),
    "focal binary gamma 1.5 alpha": (
        FocalLoss(gamma=1.5, alpha=0.7),
        lambda *a: ref_focal(*a, gamma=1.5, alpha=0.7),
        1,
    ),
    "focal multiclass": (FocalLoss(), ref_focal, 3),
    "focal multiclass alpha": (FocalLoss(alpha=0.25), lambda *a: ref_focal(*a, alpha=0.25), 3),
}
TARGETS = ["random", "empty mask", "ignore mask", "all ignored", "channel axis"]


def _inputs(channels: int, kind: str, seed: int):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, channels, 16, 16, generator=generator) * 3.0
    classes = max(channels, 2)
    target = torch.randint(0, classes, (3, 16, 16), generator=generator)
    target[torch.rand(3, 16, 16, generator=generator) < 0.2] = IGNORE  # the ignore label, scattered
    ignore = None
    if kind == "empty mask":  # no foreground at all: the case smp's DiceLoss scores differently
        target = torch.where(target == IGNORE, IGNORE, 0)
    elif kind == "ignore mask":
        ignore = torch.rand(3, 16, 16, generator=generator) < 0.3
    elif kind == "all ignored":
        target = torch.full_like(target, IGNORE)
    elif kind == "channel axis":
        target = target[:, None]
    return logits, target, ignore


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_value_and_gradient_match_the_reference(name, kind):
    loss, reference, channels = CASES[name]
    for seed in range(3):
        logits, target, ignore = _inputs(channels, kind, seed)
        ours_in = logits.clone().requires_grad_(True)
        ref_in = logits.clone().requires_grad_(True)
        ours, expected = loss(ours_in, target, ignore), reference(ref_in, target, ignore)
        torch.testing.assert_close(ours, expected, **TOL)
        ours.backward()
        expected.backward()
        torch.testing.assert_close(ours_in.grad, ref_in.grad, **TOL)


def test_binary_focal_is_smps():
    loss = FocalLoss(gamma=2.0, alpha=0.25)
    assert isinstance(loss.binary, SmpFocalLoss)
    logits, target, _ = _inputs(1, "random", 7)
    valid = target != IGNORE
    smp_mean = SmpFocalLoss("binary", alpha=0.25, gamma=2.0, ignore_index=IGNORE)(logits, target)
    torch.testing.assert_close(loss(logits, target), smp_mean, **TOL)
    assert valid.sum() < valid.numel()


# ----------------------------------------------------------------------------- why Dice stays ours
def test_smp_dice_is_our_dice_only_where_the_class_is_present():
    logits, target, _ = _inputs(1, "random", 0)
    smp_dice = SmpDiceLoss("binary", smooth=DICE_EPS / 2, eps=1e-12, ignore_index=IGNORE)
    ours = BCEDiceLoss(bce_weight=0.0)
    torch.testing.assert_close(smp_dice(logits, target), ours(logits, target), **TOL)
    empty = torch.where(target == IGNORE, IGNORE, 0)
    assert smp_dice(logits, empty).item() == 0.0  # smp: no target pixel, no Dice loss
    probs = torch.sigmoid(logits)[:, 0][empty != IGNORE].sum()
    torch.testing.assert_close(ours(logits, empty), probs / (probs + DICE_EPS), **TOL)  # ours: P / (P + eps)
    assert ours(logits, empty).item() > 0.99


def test_smp_multiclass_focal_is_another_loss():
    logits, target, _ = _inputs(3, "random", 0)
    smp_focal = SmpFocalLoss("multiclass", gamma=0.0, ignore_index=IGNORE)(logits, target)
    ours = FocalLoss(gamma=0.0)(logits, target)
    valid = target != IGNORE
    cross_entropy = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
    torch.testing.assert_close(ours, cross_entropy, **TOL)  # ours: softmax focal, CE at gamma 0
    assert abs(smp_focal.item() - ours.item()) > 0.1  # smp: one-vs-rest sigmoid focal per channel
