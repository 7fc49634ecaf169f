"""Segmenters are also scored at each mask's native resolution: grid logits resized to the mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chestlens.evaluate import seg_eval
from chestlens.evaluate.seg_eval import native_scores, native_summary


def _ellipse(rows: int, cols: int) -> np.ndarray:
    y, x = np.ogrid[:rows, :cols]
    return (((y - rows / 2) / (rows / 3)) ** 2 + ((x - cols / 2) / (cols / 4)) ** 2 <= 1).astype(np.uint8)


@pytest.mark.parametrize("flip", [False, True])
def test_grid_logits_are_scored_against_the_native_mask(monkeypatch, flip):
    native = _ellipse(150, 90)
    native[:75] = 0  # the lower half only: far from symmetric top to bottom
    monkeypatch.setattr(seg_eval, "native_label_map", lambda sample, target: native)
    grid = torch.from_numpy(np.asarray(native, np.float32))[None, None]
    grid = torch.nn.functional.interpolate(grid, size=(64, 64), mode="nearest")[0, 0]
    grid = grid.flip(0) if flip else grid
    logits = torch.stack([1 - grid, grid]) * 8 - 4  # background, lungs
    [[score]] = native_scores([logits], [(None, "lungs", "p1")], "lungs", ["lungs"])
    assert (score.dice < 0.2) if flip else (score.dice > 0.95), score
    summary = native_summary([[score]], ["p1"], n_boot=0, seed=0)
    assert summary["per_class"]["lungs"]["dice"][0] == pytest.approx(score.dice)
    assert summary["per_class"]["lungs"]["p5_image_dice"] == pytest.approx(score.dice)
