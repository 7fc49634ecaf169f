"""Build a registered architecture, optionally initialised from pretrained weights."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from chestlens.errors import ChestlensInputError
from chestlens.models.pretrained import resolve_weights
from chestlens.models.registry import get_model_config

DEFAULT = "default"


def create_model(
    name: str,
    num_classes: int,
    *,
    in_chans: int = 1,
    weights: str | Path | None = DEFAULT,
    drop_rate: float = 0.0,
) -> torch.nn.Module:
    """Create a classifier.

    Args:
        name: registry name (see :func:`chestlens.models.list_models`).
        num_classes: size of the output layer (logits).
        in_chans: input channels; 1 for grey radiographs/CT (first convolution adapted), 3 for RGB.
        weights: ``"default"`` = the architecture's offline ImageNet source (an error if it has none),
            ``None`` = random initialisation, or an offline source name / local checkpoint / explicit URL
            (see :mod:`chestlens.models.pretrained`). A classifier whose size differs from
            ``num_classes`` is dropped and re-initialised; the first convolution is adapted to ``in_chans``.
        drop_rate: dropout before the classifier.

    Returns:
        a module mapping ``(batch, in_chans, H, W)`` float tensors to ``(batch, num_classes)`` logits.
    """
    cfg = get_model_config(name)
    if weights == DEFAULT:
        if cfg.pretrained is None:
            raise ChestlensInputError(
                None,
                f"no offline ImageNet weights ship for {name}; pass weights=<checkpoint path or URL> "
                "or weights=None to train from scratch",
            )
        weights = cfg.pretrained
    kwargs = {"num_classes": num_classes, "in_chans": in_chans, "drop_rate": drop_rate}
    if weights is None:
        return timm.create_model(cfg.timm_name, pretrained=False, **kwargs)
    state_dict = resolve_weights(weights)
    # timm applies its own checkpoint filter (e.g. torchvision layouts), adapts the first convolution
    # to in_chans and drops a classifier of the wrong size; the state dict is passed in directly, so
    # timm never looks for weights elsewhere.
    return timm.create_model(
        cfg.timm_name, pretrained=True, pretrained_cfg_overlay={"state_dict": state_dict}, **kwargs
    )
