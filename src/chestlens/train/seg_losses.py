"""Segmentation losses with an ignore label: BCE + Dice (binary), Dice + cross-entropy, focal, Dice + focal.

Shapes: logits ``(B, C, H, W)`` from :func:`chestlens.models.segmentation.create_segmenter` (``C = 1``
binary, ``C >= 2`` multiclass with background at channel 0); targets ``(B, H, W)`` integer label maps
(binary: 0/1; multiclass: ``0..C-1``) where :data:`IGNORE_INDEX` marks pixels that are not scored. Every
loss also takes an optional boolean ``ignore`` ``(B, H, W)`` (True = not scored), combined with the
ignore label. Ignored pixels are removed from every term: their logits are replaced by 0 before any
arithmetic, so whatever the network predicts there (even inf/NaN) neither changes the loss nor gets a
gradient. A batch with no valid pixel gives a loss of 0 (still attached to the graph).

Soft Dice (per class, pooled over the whole batch's valid pixels, probabilities ``p``, one-hot ``t``)::

    dice = (2 * sum(p * t) + eps) / (sum(p) + sum(t) + eps),  eps = DICE_EPS = 1.0

``eps`` (Laplace smoothing) keeps the ratio defined when a class is absent from both prediction and
target (dice -> 1, loss 0), and makes predicting foreground on an all-empty batch cost
``1 - eps / (sum(p) + eps)``.

What comes from ``segmentation_models_pytorch.losses`` and what stays here (measured with smp 0.6.0;
``tests/train/test_seg_losses_smp.py`` checks both against the formulas above, tolerance 1e-5):

* Binary focal loss: smp's ``FocalLoss(mode="binary")`` is the same formula (sigmoid ``p_t``, the
  same ``alpha`` weighting, ignored pixels dropped); :class:`FocalLoss` uses it with
  ``reduction="sum"`` divided by the number of valid pixels, so a batch with none gives 0, not NaN.
* Soft Dice stays hand-written. smp's ``DiceLoss`` computes the same ratio with ``smooth = eps / 2``
  (its ``(I + s) / ((sum(p) + sum(t)) / 2 + s)``; at most 1e-6 apart over 100 random batches) wherever
  the class has a valid target pixel, but it sets the loss of a class with no target pixel in the batch
  to 0, and no argument turns that off. Here such a class costs ``sum(p) / (sum(p) + eps)``, so foreground
  predicted on an empty pneumothorax or lesion mask is penalised by the Dice term, as it always was
  in this repository's trainings. Measured on 4 x 32 x 32 N(0, 1) logits: an empty binary mask gives
  0.99944 here and 0.0 with smp (difference 0.99944); 3 classes with class 2 absent give 0.8311 and
  0.3315 (difference 0.4996).
* Multiclass focal loss stays hand-written: smp's ``FocalLoss(mode="multiclass")`` is a one-vs-rest
  *sigmoid* focal loss of each channel, averaged over classes (summed in smp 0.5), not the softmax
  focal loss used here (which equals cross-entropy at ``gamma = 0``). Measured on 4 x 3 x 32 x 32
  N(0, 1) logits: 0.9035 here against 0.3429 with smp at ``gamma = 2`` (0.5607 apart), 1.3830 (the
  cross-entropy) against 0.8006 at ``gamma = 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import FocalLoss as SmpFocalLoss
from torch import nn

from chestlens.preprocess.labels import IGNORE_INDEX

#: Additive smoothing of the soft Dice ratio (numerator and denominator), in pixels.
DICE_EPS = 1.0


def _prepare(
    logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``(logits with 0 at ignored pixels, target (B, H, W) long with 0 there, valid (B, H, W))``."""
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"logits (B, C, H, W) and target (B, H, W) expected, got {logits.shape}, {target.shape}"
        )
    valid = target != ignore_index
    if ignore is not None:
        valid = valid & ~ignore.reshape(valid.shape).bool()
    logits = logits.masked_fill(~valid[:, None], 0.0)
    return logits, torch.where(valid, target, 0).long(), valid


def _valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``(B, H, W)`` over valid pixels (0 when there are none)."""
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp_min(1)


def _softmax_dice(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, eps: float, include_background: bool
) -> torch.Tensor:
    """Mean soft Dice of ``softmax(logits)`` over classes ``1..C-1`` (``0..C-1`` with the background),
    pooled over the batch's valid pixels (prepared inputs, see :func:`_prepare`)."""
    mask = valid[:, None]
    probs = logits.softmax(1) * mask
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2) * mask
    dice = soft_dice(probs, onehot, eps)
    return (dice if include_background else dice[1:]).mean()


def soft_dice(probs: torch.Tensor, onehot: torch.Tensor, eps: float = DICE_EPS) -> torch.Tensor:
    """Per-class soft Dice ``(C,)`` of probabilities and one-hot targets ``(B, C, H, W)``, 0 where ignored."""
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    return (2.0 * intersection + eps) / (probs.sum(dims) + onehot.sum(dims) + eps)


class BCEDiceLoss(nn.Module):
    """Binary: ``bce_weight * BCE + dice_weight * (1 - soft Dice)`` (the pneumothorax seed's loss).

    BCE is the mean binary cross-entropy with logits over valid pixels; Dice is the soft Dice of
    ``sigmoid(logits)`` pooled over the batch (see the module docstring). Logits ``(B, 1, H, W)``.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        eps: float = DICE_EPS,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.bce_weight, self.dice_weight, self.eps, self.ignore_index = (
            bce_weight,
            dice_weight,
            eps,
            ignore_index,
        )

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> torch.Tensor:
        if logits.shape[1] != 1:
            raise ValueError(f"BCEDiceLoss is binary: logits need 1 channel, got {logits.shape[1]}")
        logits, target, valid = _prepare(logits, target, ignore, self.ignore_index)
        t = target[:, None].float()
        bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")[:, 0]
        probs = torch.sigmoid(logits) * valid[:, None]
        dice = soft_dice(probs, t, self.eps)[0]
        return self.bce_weight * _valid_mean(bce, valid) + self.dice_weight * (1.0 - dice)


class DiceCELoss(nn.Module):
    """Multiclass: ``ce_weight * CE + dice_weight * (1 - mean soft Dice over classes)``.

    CE is the mean softmax cross-entropy over valid pixels; Dice uses ``softmax(logits)`` pooled over
    the batch per class and is averaged over classes ``1..C-1`` (``include_background=False``, the
    default: the background is left to CE) or ``0..C-1``. Logits ``(B, C, H, W)`` with ``C >= 2``.
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        eps: float = DICE_EPS,
        include_background: bool = False,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.ce_weight, self.dice_weight, self.eps = ce_weight, dice_weight, eps
        self.include_background, self.ignore_index = include_background, ignore_index

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> torch.Tensor:
        if logits.shape[1] < 2:
            raise ValueError("DiceCELoss is multiclass: logits need >= 2 channels (background first)")
        logits, target, valid = _prepare(logits, target, ignore, self.ignore_index)
        ce = F.cross_entropy(logits, target, reduction="none")
        dice = _softmax_dice(logits, target, valid, self.eps, self.include_background)
        return self.ce_weight * _valid_mean(ce, valid) + self.dice_weight * (1.0 - dice)


class FocalLoss(nn.Module):
    """Focal loss ``-alpha_t * (1 - p_t) ** gamma * log(p_t)``, mean over valid pixels.

    ``p_t`` is the predicted probability of the true class: sigmoid for 1-channel logits (binary),
    softmax over channels otherwise (multiclass). ``alpha`` (optional) weights foreground pixels
    (target != 0) by ``alpha`` and background pixels by ``1 - alpha``; None = no weighting. With
    ``gamma = 0`` and no ``alpha`` it equals BCE (binary) or cross-entropy (multiclass). The binary
    case is smp's ``FocalLoss(mode="binary")``; the multiclass one is computed here (see the module
    docstring for why).
    """

    def __init__(
        self, gamma: float = 2.0, alpha: float | None = None, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__()
        self.gamma, self.alpha, self.ignore_index = gamma, alpha, ignore_index
        self.binary = SmpFocalLoss(
            "binary", alpha=alpha, gamma=gamma, ignore_index=ignore_index, reduction="sum"
        )

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits, target, valid = _prepare(logits, target, ignore, self.ignore_index)
        if logits.shape[1] == 1:  # smp drops the pixels labelled ignore_index; sum / count: 0 when none
            labels = torch.where(valid, target, self.ignore_index)
            return self.binary(logits, labels) / valid.sum().clamp_min(1)
        log_pt = -F.cross_entropy(logits, target, reduction="none")
        loss = -((-torch.expm1(log_pt)) ** self.gamma) * log_pt
        if self.alpha is not None:
            loss = loss * torch.where(target != 0, self.alpha, 1.0 - self.alpha)
        return _valid_mean(loss, valid)


class DiceFocalLoss(nn.Module):
    """``focal_weight * focal + dice_weight * (1 - soft Dice)``, binary or multiclass.

    The focal term is :class:`FocalLoss` (``gamma``, no ``alpha``), which down-weights the many easy
    background pixels that dominate cross-entropy on small lesions; the Dice term is the soft Dice of
    ``sigmoid(logits)`` (1 channel) or the mean over foreground classes ``1..C-1`` of ``softmax(logits)``
    (the Dice of :class:`DiceCELoss`), pooled over the batch. Logits ``(B, C, H, W)``.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        focal_weight: float = 1.0,
        dice_weight: float = 1.0,
        eps: float = DICE_EPS,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.focal = FocalLoss(gamma=gamma, ignore_index=ignore_index)
        self.weights = (focal_weight, dice_weight)
        self.eps, self.ignore_index = eps, ignore_index

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> torch.Tensor:
        focal = self.focal(logits, target, ignore)
        logits, target, valid = _prepare(logits, target, ignore, self.ignore_index)
        if logits.shape[1] == 1:
            mask = valid[:, None]
            dice = soft_dice(torch.sigmoid(logits) * mask, target[:, None].float() * mask, self.eps)[0]
        else:
            dice = _softmax_dice(logits, target, valid, self.eps, include_background=False)
        focal_weight, dice_weight = self.weights
        return focal_weight * focal + dice_weight * (1.0 - dice)


LOSSES: dict[str, type[nn.Module]] = {
    "bce_dice": BCEDiceLoss,
    "dice_ce": DiceCELoss,
    "focal": FocalLoss,
    "dice_focal": DiceFocalLoss,
}


def make_loss(name: str) -> nn.Module:
    """The loss registered as ``name`` (:data:`LOSSES`) with its default weights and the ignore label."""
    return LOSSES[name]()
