"""Size limits checked from the header, before any pixel data is decoded.

They protect against decompression bombs (a few KB of compressed zeros that claim 20000 x 20000
pixels) and bound the memory one input may take: the voxel limit comes from a decoding budget in bytes
(:data:`DEFAULT_DECODE_BUDGET`) and the measured peak cost of decoding a voxel
(:data:`PEAK_BYTES_PER_VOXEL`), so a 1 MB file can no longer claim 12 GB.
"""

from __future__ import annotations

from chestlens.errors import ChestlensInputError

#: Default limit per 2-D image or frame: 100 million pixels (e.g. 10000 x 10000).
DEFAULT_MAX_PIXELS = 100_000_000
#: Peak memory of decoding one voxel (bytes), the largest measured: an int16 NIfTI costs 8.1 bytes per
#: voxel here (100 M voxels: +776 MB), the reliability audit measured up to 12 (float copies, the stack).
PEAK_BYTES_PER_VOXEL = 12
#: Memory one decoded multi-frame file, series or volume may take by default: 4 GiB.
DEFAULT_DECODE_BUDGET = 4 * 2**30
#: Default limit for a whole multi-frame file, series or volume: the budget's worth of voxels (about
#: 358 million: 1,365 CT slices of 512 x 512).
DEFAULT_MAX_VOXELS = DEFAULT_DECODE_BUDGET // PEAK_BYTES_PER_VOXEL


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
        need = rows * cols * frames * PEAK_BYTES_PER_VOXEL / 2**30
        raise ChestlensInputError(
            where,
            f"{frames} frames of {rows} x {cols} pixels exceed the limit of {max_voxels:,} voxels in total "
            f"(decoding would take about {need:.1f} GiB)",
        )
