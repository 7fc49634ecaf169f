"""Training tensors of segmentation samples: a source's stored quarter turn is undone for image and mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from chestlens.data.records import DISPLAY_QUARTER_TURNS, Masks, Sample
from chestlens.data.seg_tensors import segmented_images
from chestlens.preprocess.spec import PreprocessSpec


@dataclass(frozen=True)
class _CornerMask:
    classes: tuple[str, ...] = ("ggo", "consolidation")

    def load(self) -> Masks:
        ggo = np.zeros((8, 8), bool)
        ggo[:4, :4] = True  # top-left quarter
        return Masks(layers={"ggo": ggo, "consolidation": np.zeros((8, 8), bool)})


def _sample(path, turns: str | None) -> Sample:
    extra = {} if turns is None else {DISPLAY_QUARTER_TURNS: turns}
    return Sample("test", f"test:{turns}", path, "p", ("COVID-19",), "ct", masks=_CornerMask(), extra=extra)


def test_quarter_turn_is_clockwise_and_moves_image_and_mask_together(tmp_path):
    pixels = np.zeros((8, 8), np.uint8)
    pixels[:4, :4] = 255  # bright top-left quarter, where the GGO mask is
    Image.fromarray(pixels).save(tmp_path / "slice.png")
    spec = PreprocessSpec(input_size=8, in_chans=1, mean=(0.5,), std=(0.5,))
    items = [(_sample(tmp_path / "slice.png", turns), "train", "p") for turns in (None, "1")]
    data = segmented_images(items, "lesions-ct", spec)
    stored, turned = data.images[0, 0], data.images[1, 0]
    assert stored[:4, :4].min() > stored[4:, :].max()  # stored: bright top-left
    assert turned[:4, 4:].min() > turned[4:, :].max()  # one clockwise quarter: bright top-right
    assert torch.equal(turned, torch.rot90(stored, -1))
    assert (data.targets[1, :4, 4:] == 1).all() and int((data.targets[1] == 1).sum()) == 16
