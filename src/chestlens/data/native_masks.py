"""Label maps at their native resolution, turned to the radiological display like the images.

The evaluation on the model grid (:mod:`chestlens.data.seg_tensors`) stretches every mask to the
network's ``S x S`` input; this gives the same masks at the size they were drawn, so a prediction can
also be scored where a reader would look at it.
"""

from __future__ import annotations

import numpy as np

from chestlens.data.records import Sample, display_quarter_turns
from chestlens.data.tasks import target_label_map
from chestlens.errors import ChestlensInputError


def native_label_map(sample: Sample, target: str) -> np.ndarray:
    """``sample``'s ``target`` label map ``(H, W)`` uint8 at its native size (0 background, ``k`` the k-th
    class, the ignore label where not scored), turned back to the display like its image."""
    if sample.masks is None:
        raise ChestlensInputError(sample.path, f"{sample.uid} has no masks for target {target}")
    label_map = np.asarray(target_label_map(target, sample.masks.load()))
    turns = display_quarter_turns(sample)
    return np.rot90(label_map, -turns).copy() if turns else label_map
