"""The resizes done outside the model graphs: masks and label maps (nearest), and the working image.

Images reach a network through the graph's own antialiased bilinear resize
(:mod:`chestlens.models.graphs`); what is resized here are masks, label maps and, once per screened
image, the full-resolution radiograph down to the working image that every model stage reads.
"""

from __future__ import annotations

import numpy as np


def resize_nearest(array: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of masks or label maps ``(..., H, W)`` to ``grid`` = ``(h, w)`` by pixel
    centres (source index ``floor((i + 0.5) * H / h)``, PyTorch's ``nearest-exact``; plain ``nearest``
    shifts masks by up to a pixel towards the top left). The dtype is kept."""
    grid = (int(grid[0]), int(grid[1]))
    h, w = array.shape[-2:]
    if (h, w) == grid:
        return array
    rows = np.minimum(((np.arange(grid[0]) + 0.5) * (h / grid[0])).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(grid[1]) + 0.5) * (w / grid[1])).astype(np.int64), w - 1)
    return array[..., rows[:, None], cols[None, :]]


def working_image(unit: np.ndarray, longest_side: int) -> np.ndarray:
    """Downsample a grey ``[0, 1]`` float32 image ``(H, W)`` once, keeping its aspect ratio, so that its
    longer side is at most ``longest_side`` pixels (area averaging, i.e. antialiased); smaller images
    come back unchanged. Every model stage then reads this one image instead of resizing from full
    resolution again."""
    import cv2

    h, w = unit.shape
    scale = longest_side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(unit, dtype=np.float32)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # OpenCV takes (width, height)
    return cv2.resize(np.asarray(unit, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
