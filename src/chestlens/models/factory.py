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
    kwargs = {"num_classes": num_classes, "in_chans": in_chans, "drop_rate": drop_rate, **cfg.timm_kwargs}
    if weights is None:
        model = timm.create_model(cfg.timm_name, pretrained=False, **kwargs)
        _init_head(model)
        return model
    state_dict = resolve_weights(weights)
    if cfg.head:  # a registry-specific head never fits a checkpoint's: keep the checkpoint's features only
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(cfg.head)}
    head = model_head_keys(cfg.timm_name)
    new_head = any(k not in state_dict or state_dict[k].shape[0] != num_classes for k in head)
    # timm applies its own checkpoint filter (e.g. torchvision layouts), adapts the first convolution
    # to in_chans and drops a classifier of the wrong size; the state dict is passed in directly, so
    # timm never looks for weights elsewhere.
    model = timm.create_model(
        cfg.timm_name, pretrained=True, pretrained_cfg_overlay={"state_dict": state_dict}, **kwargs
    )
    if new_head:
        _init_head(model)
    return model


def model_head_keys(timm_name: str) -> tuple[str, str]:
    """State-dict keys of the final classifier's weight and bias for a timm architecture."""
    classifier = timm.models.get_pretrained_cfg_value(timm_name, "classifier") or "classifier"
    return f"{classifier}.weight", f"{classifier}.bias"


def _init_head(model: torch.nn.Module) -> None:
    """Small initial logits for a new classifier: weights ~ N(0, 0.01), bias 0.

    timm's default for some families (uniform +-1/sqrt(num_classes)) gives logits of +-15 with three
    classes, i.e. a first loss of about 6 instead of log(3).
    """
    head = model.get_classifier()
    if isinstance(head, torch.nn.Linear):
        torch.nn.init.normal_(head.weight, std=0.01)
        torch.nn.init.zeros_(head.bias)
