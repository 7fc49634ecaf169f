"""PNG, JPEG, TIFF and BMP pictures (Pillow) to :class:`MedicalImage`.

Conventions:

* The format was sniffed from the bytes; Pillow is only allowed that format, so a PNG named
  ``.jpg`` is read as the PNG it is.
* EXIF orientation is applied (``ImageOps.exif_transpose``), so rows/cols are as displayed.
* Scaling to ``[0, 1]`` by the container's bit depth, never by the data: 8-bit modes (L, P, RGB,
  RGBA, LA, CMYK...) by 255, 16-bit grey (``I;16*``) by 65535 (a 12-bit image in a 16-bit PNG therefore
  stays dark, as in any viewer), 1-bit by 1. 32-bit integer (``I``) and float (``F``) images have no
  nominal range: ``I`` is scaled by 65535 when its values fit in ``[0, 65535]``, otherwise, like
  ``F`` images outside ``[0, 1]``, min-max normalised. NaN and infinite ``F`` values are refused or
  masked first, by the rule of :mod:`chestlens.io.finite`.
* Alpha (RGBA, LA, PA, palette with transparency) is composited on black: transparent = dark =
  background, as air in a radiograph.
* Colour is converted to grey (BT.601); ``meta.is_colour`` tells whether the channels really differ.
* Multi-page TIFFs: the first page is read and a warning recorded in ``meta.warnings``.
* ``max_side``: a picture whose longer side is larger is shrunk by an integer factor while it is decoded
  (JPEG: Pillow's DCT-scaled ``draft`` decoding) or right after, before any float copy
  (``Image.reduce``, box averaging), and a warning says so. The screener reads with
  :data:`READ_MAX_SIDE`: its models need 512 pixels, and a 97 KB PNG of 10000 x 10000 pixels then costs
  tens of megabytes instead of almost a gigabyte.
* Size: the header size is checked against ``max_pixels`` before decoding. Pillow's own
  decompression-bomb check also runs when the file is opened (its error is turned into
  :class:`ChestlensInputError`, its warning is silenced), so the effective limit is the smaller of
  ``max_pixels`` and ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (about 179 million pixels by default).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from chestlens.errors import ChestlensInputError
from chestlens.io.colour import rgb_to_grey
from chestlens.io.finite import mask_non_finite
from chestlens.io.image import ImageMeta, MedicalImage, SourceFormat
from chestlens.io.limits import DEFAULT_MAX_PIXELS, check_size

#: chestlens format name -> the Pillow formats allowed to open it.
PILLOW_FORMATS: dict[str, tuple[str, ...]] = {
    "png": ("PNG",),
    "jpeg": ("JPEG", "MPO"),
    "tiff": ("TIFF",),
    "bmp": ("BMP",),
}
_GREY_16 = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
#: The longer side above which the screener's reads shrink a picture (see the module docstring).
READ_MAX_SIDE = 4096
_FULL_16 = 65535.0


def read_raster(
    source: Path | bytes,
    fmt: str,
    *,
    where: str | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
) -> MedicalImage:
    """Read a picture; ``fmt`` is the sniffed format (``png``, ``jpeg``, ``tiff``, ``bmp``).

    Returns pixels ``(rows, cols)`` float32 in ``[0, 1]`` (see the module docstring); with ``max_side``,
    shrunk by an integer factor so that the longer side is at most ``max_side``.
    """
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    with warnings.catch_warnings(record=True) as pillow_warnings:  # never on stderr: into the result
        warnings.simplefilter("always")
        try:
            image = Image.open(handle, formats=PILLOW_FORMATS[fmt])
        except Image.DecompressionBombError as error:
            raise ChestlensInputError(where, f"possible decompression bomb: {error}") from error
        except UnidentifiedImageError as error:
            raise ChestlensInputError(where, f"cannot read {fmt.upper()} image header") from error
        except OSError as error:
            raise ChestlensInputError(where, f"cannot read {fmt.upper()} image ({error})") from error
    with image, warnings.catch_warnings(record=True) as decode_warnings:
        warnings.simplefilter("always")
        check_size(where, image.height, image.width, max_pixels=max_pixels)
        notes = []
        if getattr(image, "n_frames", 1) > 1:
            notes.append(f"{image.n_frames} frames/pages in the file; only the first was read")
        original = f"{image.width} x {image.height}"
        factor = _reduction(image.size, max_side)
        try:
            if factor > 1 and fmt == "jpeg":
                image.draft(image.mode, (image.width // factor, image.height // factor))  # DCT scaling
            image.load()
            upright = _shrunk(ImageOps.exif_transpose(image), max_side)
        except (OSError, ValueError, SyntaxError) as error:
            reason = f"{fmt.upper()} image data is truncated or corrupt ({error})"
            raise ChestlensInputError(where, reason) from error
        mode = image.mode
        grey = _to_unit_grey(upright, where)
        size = f"{upright.width} x {upright.height}"
        if factor > 1 and size != original:
            notes.append(f"shrunk while reading from {original} to {size} pixels (limit {max_side})")
    notes += _decoder_notes([*pillow_warnings, *decode_warnings])
    meta = ImageMeta(
        source_path=where,
        format=cast(SourceFormat, fmt),
        rows=int(grey.pixels.shape[0]),
        cols=int(grey.pixels.shape[1]),
        pixel_unit="unit",
        bits_stored=grey.bits,
        bits_allocated=grey.bits,
        is_colour=grey.is_colour,
        source_mode=mode,
        value_range=grey.value_range,
        warnings=(*notes, *grey.warnings),
    )
    return MedicalImage(pixels=np.ascontiguousarray(grey.pixels, dtype=np.float32), meta=meta)


def _decoder_notes(caught: list[warnings.WarningMessage]) -> list[str]:
    """Pillow's warnings while reading (corrupt EXIF data, ...) as reader notes for the result, once
    each; the size warning is left out (the size is checked by :func:`check_size`)."""
    texts = [
        f"image decoder: {str(w.message).splitlines()[0][:160]}"
        for w in caught
        if not issubclass(w.category, Image.DecompressionBombWarning)
    ]
    return list(dict.fromkeys(texts))


def _reduction(size: tuple[int, int], max_side: int | None) -> int:
    """The smallest integer factor that brings the longer side of ``size`` to ``max_side`` or less."""
    return 1 if max_side is None else max(1, -(-max(size) // max_side))  # ceiling division


def _shrunk(image: Image.Image, max_side: int | None) -> Image.Image:
    """``image`` box-averaged by the integer factor that brings its longer side to ``max_side`` or less
    (unchanged when it already fits)."""
    factor = _reduction(image.size, max_side)
    if factor == 1:
        return image
    if image.mode in _GREY_16:  # Pillow's reduce() mishandles 16-bit grey: average the blocks in numpy
        rows, cols = image.height // factor * factor, image.width // factor * factor
        blocks = np.asarray(image, dtype=np.float32)[:rows, :cols]
        means = blocks.reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))
        return Image.fromarray(np.round(means).astype(np.uint16))
    try:
        return image.reduce(factor)
    except ValueError:  # modes reduce() does not take: box resampling of a grey or RGBA copy
        size = (max(1, image.width // factor), max(1, image.height // factor))
        mode = "RGBA" if "A" in image.mode or image.mode == "P" else "L"
        return image.convert(mode).resize(size, Image.Resampling.BOX)


@dataclass(frozen=True, slots=True)
class _Grey:
    """A picture as grey values in ``[0, 1]``, with what the conversion found out."""

    pixels: np.ndarray
    is_colour: bool
    bits: int  # bits per sample of the source
    value_range: tuple[float, float]  # raw (min, max)
    warnings: tuple[str, ...] = ()


def _to_unit_grey(image: Image.Image, where: str | None) -> _Grey:
    """Grey in ``[0, 1]`` for any Pillow mode (see the module docstring)."""
    mode = image.mode
    if mode == "1":
        raw = np.asarray(image, dtype=np.float32)
        return _Grey(raw, False, 1, _range(raw))
    if mode in _GREY_16:
        raw = np.asarray(image).astype(np.float32)
        return _Grey(raw / _FULL_16, False, 16, _range(raw))
    if mode in ("I", "F"):
        raw, notes = mask_non_finite(np.asarray(image).astype(np.float64), where)
        return _Grey(_scale_wide(raw, mode).astype(np.float32), False, 32, _range(raw), notes)
    if mode == "L":
        raw = np.asarray(image, dtype=np.float32)
        return _Grey(raw / 255.0, False, 8, _range(raw))
    if mode == "LA":
        raw = np.asarray(image, dtype=np.float32)
        return _Grey(raw[..., 0] * raw[..., 1] / (255.0 * 255.0), False, 8, _range(raw[..., 0]))
    has_alpha = mode in ("RGBA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    rgba = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:4] if has_alpha else rgba
    grey, is_colour = rgb_to_grey(rgb)
    return _Grey(grey, is_colour, 8, _range(rgb * 255.0))


def _scale_wide(raw: np.ndarray, mode: str) -> np.ndarray:
    low, high = float(raw.min()), float(raw.max())
    if mode == "I" and low >= 0 and high <= _FULL_16:
        return raw / _FULL_16
    if mode == "F" and low >= 0 and high <= 1:
        return raw
    return (raw - low) / (high - low) if high > low else np.zeros_like(raw)


def _range(raw: np.ndarray) -> tuple[float, float]:
    return (float(raw.min()), float(raw.max()))
