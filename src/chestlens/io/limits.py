"""Size limits checked from the header, before any pixel data is decoded.

They protect against decompression bombs (a few KB of compressed zeros that claim 20000 x 20000
pixels) and against volumes that would not fit in memory as float32.
"""

from __future__ import annotations

from chestlens.errors import ChestlensInputError

#: Default limit per 2-D image or frame: 100 million pixels (e.g. 10000 x 10000).
DEFAULT_MAX_PIXELS = 100_000_000
#: Default limit for a whole multi-frame file, series or volume: 1 billion voxels (4 GB as float32).
DEFAULT_MAX_VOXELS = 1_000_000_000


def check_size(
    where: str | None,
    rows: int,
    cols: int,
    frames: int = 1,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> None:
    """Raise :class:`ChestlensInputError` when a header promises more pixels than allowed.

    Args:
        where: file or folder for the message.
        rows, cols: size of one frame in pixels.
        frames: number of frames or slices.
        max_pixels: limit for ``rows * cols``.
        max_voxels: limit for ``rows * cols * frames``.
    """
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise ChestlensInputError(where, f"image header gives an invalid size {frames} x {rows} x {cols}")
    if rows * cols > max_pixels:
        raise ChestlensInputError(
            where,
            f"image of {rows} x {cols} pixels exceeds the limit of {max_pixels:,} pixels per frame "
            "(possible decompression bomb)",
        )
    if rows * cols * frames > max_voxels:
        raise ChestlensInputError(
            where,
            f"{frames} frames of {rows} x {cols} pixels exceed the limit of {max_voxels:,} voxels in total",
        )
