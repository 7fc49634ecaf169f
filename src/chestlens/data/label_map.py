"""Mask layers to the ``uint8`` label map a segmentation target is trained and scored on (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chestlens.data.records import Masks
from chestlens.errors import ChestlensInputError
from chestlens.preprocess.labels import IGNORE_INDEX, SegMode


def encode_target(masks: Masks, classes: Sequence[str], mode: SegMode) -> np.ndarray:
    """Encode mask layers as a ``uint8`` label map of the layers' shape.

    Args:
        masks: the sample's mask layers and ignore area.
        classes: layer names. ``binary``: the target is their union over the layers present (e.g.
            ``("lung_left", "lung_right")``; at least one must be present). ``multiclass``: class ``k``
            (1-based) is ``classes[k - 1]``; every layer must be present (a missing layer means "not
            annotated", not "empty"); where layers overlap the later class wins, so list classes in
            increasing priority.
        mode: ``"binary"`` (values 0/1) or ``"multiclass"`` (0 background, 1..len(classes)).

    Returns:
        label map with :data:`IGNORE_INDEX` wherever ``masks.ignore`` is set (it overrides every class).
    """
    present = [c for c in classes if c in masks.layers]
    missing = [c for c in classes if c not in masks.layers]
    if not present or (mode == "multiclass" and missing):
        raise ChestlensInputError(
            None,
            f"mask layers {sorted(masks.layers)} lack {missing} for a {mode} target of {list(classes)}",
        )
    if len(classes) >= IGNORE_INDEX:
        raise ChestlensInputError(None, f"at most {IGNORE_INDEX - 1} classes fit a uint8 label map")
    shapes = {masks.layers[c].shape for c in present} | (
        {masks.ignore.shape} if masks.ignore is not None else set()
    )
    if len(shapes) != 1:
        raise ChestlensInputError(None, f"mask layers differ in shape: {sorted(shapes)}")
    target = np.zeros(shapes.pop(), dtype=np.uint8)
    for k, name in enumerate(present, start=1):
        target[masks.layers[name].astype(bool)] = 1 if mode == "binary" else k
    if masks.ignore is not None:
        target[masks.ignore.astype(bool)] = IGNORE_INDEX
    return target
