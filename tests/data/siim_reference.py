"""Ports of SIIM-ACR's ``mask_functions.py`` (rle2mask, mask2rle), written independently of
``chestlens.data.rle`` so tests can check chestlens against the competition's own algorithm and build
label files in the real format."""

from __future__ import annotations

import numpy as np


def reference_rle2mask(rle: str, width: int, height: int) -> np.ndarray:
    """SIIM's mask_functions.rle2mask algorithm (returns (width, height); users transpose)."""
    mask = np.zeros(width * height)
    if rle.strip() == "-1":
        return mask.reshape(width, height)
    array = [int(x) for x in rle.split()]
    position = 0
    for start, length in zip(array[0::2], array[1::2], strict=True):
        position += start
        mask[position : position + length] = 255
        position += length
    return mask.reshape(width, height)


def reference_mask2rle(img: np.ndarray, width: int, height: int) -> str:
    """SIIM's mask_functions.mask2rle algorithm; ``img[x][y]`` is the transposed 0/255 mask."""
    rle: list[str] = []
    last_color, current_pixel, run_start, run_length = 0, 0, -1, 0
    for x in range(width):
        for y in range(height):
            color = img[x][y]
            if color != last_color:
                if color == 255:
                    run_start, run_length = current_pixel, 1
                else:
                    rle += [str(run_start), str(run_length)]
                    run_start, run_length, current_pixel = -1, 0, 0
            elif run_start > -1:
                run_length += 1
            last_color = color
            current_pixel += 1
    return " ".join(rle)


def siim_mask2rle(mask: np.ndarray) -> str:
    """SIIM's mask2rle applied the way its users did: on the transposed 0/255 ``(rows, cols)`` mask."""
    return reference_mask2rle(mask.T.astype(np.uint8) * 255, mask.shape[1], mask.shape[0])
