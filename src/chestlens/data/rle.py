"""Run-length encoding of binary masks, in the two conventions chest datasets use.

Both conventions flatten the mask in **column-major** order (top to bottom, then left to right:
flat index ``i`` is row ``i % rows``, column ``i // rows``), which is the same as numbering the
pixels of the transposed mask row by row. Both write space-separated integer pairs.

``"siim"`` (SIIM-ACR Pneumothorax, ``train-rle.csv`` and ``stage_2_train.csv``)
    Pairs are ``(offset, length)``. The offset is *relative*: the number of background pixels
    between the end of the previous run and the start of this one; for the first run it is the
    0-indexed flat start. ``"-1"`` (written ``" -1"`` in ``train-rle.csv``) means an empty mask.
    This is what SIIM's ``mask_functions.py`` does: ``rle2mask(rle, width, height)`` fills a flat
    array run by run (``position += offset``; fill ``length``; ``position += length``) and
    reshapes it to ``(width, height)``, which users transpose (``.T``) to get ``(rows, cols)``;
    ``mask2rle(img, width, height)`` walks ``img[x][y]`` with ``x`` outer, i.e. the transposed
    mask. Example: a 3x4 mask with pixels (row, col) (2,0), (0,1), (1,1), (1,3), (2,3) set is
    ``"2 3 5 2"``.

``"kaggle"`` (the standard Kaggle ``EncodedPixels``, e.g. TGS Salt, HuBMAP)
    Pairs are ``(start, length)`` with *absolute*, **1-indexed** starts: "1 is pixel (1,1),
    2 is pixel (2,1)". The same 3x4 example is ``"3 3 11 2"``. An empty mask is ``""``.

Note: SIIM's original ``mask2rle`` never writes a run that reaches the last pixel of the image
(it only closes runs on a 1 -> 0 transition); :func:`encode_rle` writes it, and SIIM's
``rle2mask`` decodes it correctly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from chestlens.errors import ChestlensInputError

Convention = Literal["siim", "kaggle"]

# What encode_rle writes for an empty mask.
EMPTY_RLE = {"siim": "-1", "kaggle": ""}


def decode_rle(rle: str, shape: tuple[int, int], *, convention: Convention = "siim") -> np.ndarray:
    """Decode one RLE string into a boolean mask.

    Args:
        rle: space-separated integer pairs (see the module docstring); ``"-1"`` or an empty or
            blank string decodes to an empty mask in either convention.
        shape: ``(rows, cols)`` of the image, i.e. DICOM ``(Rows, Columns)``.
        convention: ``"siim"`` (relative offsets, 0-indexed) or ``"kaggle"`` (absolute 1-indexed
            starts); both column-major.

    Returns:
        C-contiguous boolean array of shape ``(rows, cols)``, True inside the mask; overlapping
        runs are united.

    Raises:
        ChestlensInputError: (without a path; callers re-raise naming the file and row) for
            non-integer tokens, an odd number of values, negative offsets, starts below 1
            (``"kaggle"``), lengths below 1, or runs past the last pixel.
    """
    if convention not in EMPTY_RLE:
        raise ValueError(f"unknown RLE convention {convention!r}; use 'siim' or 'kaggle'")
    rows, cols = shape
    size = rows * cols
    values = parse_rle(rle)
    if values.size == 0:
        return np.zeros(shape, dtype=bool)
    firsts, lengths = values[0::2], values[1::2]
    if np.any(lengths < 1):
        raise ChestlensInputError(None, f"RLE run length below 1 in {_clip(rle)!r}")
    if convention == "siim":
        if np.any(firsts < 0):
            raise ChestlensInputError(None, f"negative RLE offset in {_clip(rle)!r}")
        ends_before = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        starts = np.cumsum(firsts) + ends_before
    else:
        if np.any(firsts < 1):
            raise ChestlensInputError(None, f"RLE start below 1 (starts are 1-indexed) in {_clip(rle)!r}")
        starts = firsts - 1
    ends = starts + lengths
    if ends.max() > size:
        raise ChestlensInputError(
            None, f"RLE run ends at pixel {int(ends.max())}, past the {rows}x{cols} image ({size} pixels)"
        )
    flat = np.zeros(size, dtype=bool)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        flat[start:end] = True
    return np.ascontiguousarray(flat.reshape((rows, cols), order="F"))


def encode_rle(mask: np.ndarray, *, convention: Convention = "siim") -> str:
    """Encode a 2-D mask (non-zero = inside) as an RLE string; inverse of :func:`decode_rle`.

    Args:
        mask: array of shape ``(rows, cols)``; any non-zero value counts as inside.
        convention: ``"siim"`` or ``"kaggle"`` (see the module docstring).

    Returns:
        The RLE string with maximal runs; an empty mask gives ``"-1"`` (``"siim"``) or ``""``
        (``"kaggle"``).
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (rows, cols), got shape {mask.shape}")
    if convention not in EMPTY_RLE:
        raise ValueError(f"unknown RLE convention {convention!r}; use 'siim' or 'kaggle'")
    flat = np.asarray(mask).astype(bool).ravel(order="F")
    padded = np.concatenate(([False], flat, [False]))
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    if changes.size == 0:
        return EMPTY_RLE[convention]
    starts, ends = changes[0::2], changes[1::2]
    lengths = ends - starts
    # siim: background pixels since the previous run's end; kaggle: 1-indexed absolute start.
    firsts = starts - np.concatenate(([0], ends[:-1])) if convention == "siim" else starts + 1
    pairs = np.column_stack((firsts, lengths)).ravel()
    return " ".join(map(str, pairs.tolist()))


def parse_rle(rle: str) -> np.ndarray:
    """The integers of an RLE string (``"-1"`` or blank: none), checked for syntax only.

    Raises:
        ChestlensInputError: (without a path) a non-integer token or an odd number of values.
    """
    text = rle.strip()
    if text in ("", "-1"):
        return np.zeros(0, dtype=np.int64)
    try:
        values = np.array([int(token) for token in text.split()], dtype=np.int64)
    except ValueError:
        raise ChestlensInputError(None, f"RLE has a non-integer value in {_clip(rle)!r}") from None
    if values.size % 2:
        raise ChestlensInputError(None, f"RLE has an odd number of values ({values.size}) in {_clip(rle)!r}")
    return values


def _clip(text: str, limit: int = 60) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."
