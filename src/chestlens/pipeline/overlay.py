"""Overlay pictures of a screening: heatmap, lung contour, lesion masks, legend (PNG, written atomically).

One picture per input, panels side by side at display size (longest side ``DISPLAY_SIDE``):
the image; the class-activation heatmap with the lung contour; the lesion masks in distinct colours with
the lung contour. A CT series gets a strip of evenly spaced slices and a lesion-burden plot. Every picture
carries the research-use line; rejected inputs carry the gate's reason instead of scores.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure  # pyplot-free: no GUI backend is ever selected
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from chestlens.atomic import write_bytes_atomic
from chestlens.io.preview import preview_array
from chestlens.pipeline.screener import Screening
from chestlens.preprocess.resize import resize_nearest

DISPLAY_SIDE = 512
MIN_DISPLAY_SIDE = 384  # small images (e.g. a 128 px CT slice) are enlarged to this
#: Text size (pixels) and line height of the captions, in matplotlib's DejaVu Sans (a core dependency,
#: so every install renders the same glyphs: file names keep their dots, words their spaces).
FONT_SIZE = 13
LINE_HEIGHT = 17
LUNG_COLOUR = (0, 220, 0)
#: Lesion colours by label; the pneumothorax seed drew its masks in red.
LESION_COLOURS = {
    "ground_glass_opacity": (255, 200, 0),
    "ggo": (255, 200, 0),
    "consolidation": (230, 30, 30),
    "pneumothorax": (230, 30, 30),
}
FALLBACK_COLOURS = [(0, 160, 255), (200, 0, 200), (255, 120, 0)]
HEATMAP_ALPHA = 0.45
MASK_ALPHA = 0.45
STRIP_SLICES = 8


def _resize_smooth(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a grey picture or a heatmap ``(H, W)`` to ``size`` = ``(height, width)``."""
    picture = Image.fromarray(array if array.dtype == np.uint8 else array.astype(np.float32))
    return np.asarray(picture.resize((size[1], size[0]), Image.Resampling.BILINEAR))


def _contour(mask: np.ndarray) -> np.ndarray:
    """One-pixel outline of a bool mask, thickened to two pixels for visibility."""
    edge = mask & ~ndimage.binary_erosion(mask)
    return ndimage.binary_dilation(edge)


def _blend(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float) -> np.ndarray:
    out = rgb.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour, dtype=np.float32)
    return out.astype(np.uint8)


def _lesion_colour(label: str, index: int) -> tuple[int, int, int]:
    return LESION_COLOURS.get(label, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])


def _panels(screening: Screening, grey: np.ndarray) -> list[tuple[str, np.ndarray]]:
    size = grey.shape
    base = np.repeat(grey[..., None], 3, axis=2)
    lungs = None if screening.lung_mask is None else resize_nearest(screening.lung_mask, size)
    panels = [("image", base)]
    if screening.heatmap is not None:
        heat = _resize_smooth(screening.heatmap, size).clip(0, 1)
        coloured = (colormaps["jet"](heat)[..., :3] * 255).astype(np.float32)
        weight = HEATMAP_ALPHA * heat[..., None]
        panel = ((1 - weight) * base + weight * coloured).astype(np.uint8)
        if lungs is not None:
            panel[_contour(lungs)] = LUNG_COLOUR
        explanation = screening.result.explanation
        method = "CAM" if explanation.method == "cam" else explanation.method
        panels.append((f"{method}: {explanation.target_label}", panel))
    if screening.lesion_map is not None and screening.lesion_map.ndim == 2:
        panel = base.copy()
        labels = resize_nearest(screening.lesion_map, size)
        for k, label in enumerate(screening.lesion_labels, start=1):
            panel = _blend(panel, labels == k, _lesion_colour(label, k), MASK_ALPHA)
        if lungs is not None:
            panel[_contour(lungs)] = LUNG_COLOUR
        panels.append(("lesions", panel))
    elif lungs is not None and len(panels) == 1:
        panel = base.copy()
        panel[_contour(lungs)] = LUNG_COLOUR
        panels.append(("lung fields", panel))
    return panels


def _legend(screening: Screening) -> list[tuple[str, tuple[int, int, int]]]:
    items = []
    if screening.lung_mask is not None:
        items.append(("lung contour", LUNG_COLOUR))
    for k, label in enumerate(screening.lesion_labels, start=1):
        if screening.lesion_map is not None:
            items.append((label.replace("_", " "), _lesion_colour(label, k)))
    return items


def _header(screening: Screening) -> list[str]:
    result = screening.result
    lines = [Path(result.input.source).name]
    if not result.gate.accepted:
        return [*lines, f"REJECTED by the quality gate: {result.gate.reason}"]
    if result.classification is not None:
        probs = ", ".join(f"{k} {v:.2f}" for k, v in result.classification.probabilities.items())
        decisions = "; ".join(
            f"{d.label}: {'POSITIVE' if d.positive else 'negative'} at threshold {d.threshold:.2f}"
            for d in result.classification.decisions
        )
        lines += [probs, decisions] if decisions else [probs]
        if result.classification.meaning:
            lines.append(result.classification.meaning)
    if result.explanation is not None and result.explanation.energy_in_lungs is not None:
        lines.append(f"heatmap inside the lungs: {result.explanation.energy_in_lungs:.0%}")
    return lines


@cache
def caption_font() -> ImageFont.FreeTypeFont:
    """DejaVu Sans at :data:`FONT_SIZE` from matplotlib's own fonts."""
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(path), FONT_SIZE)


def wrap_to_width(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels (a longer word gets a line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _compose(panels: list[tuple[str, np.ndarray]], header: list[str], legend, disclaimer: str) -> Image.Image:
    font, line = caption_font(), LINE_HEIGHT
    height, width = panels[0][1].shape[:2]
    text_width = width * len(panels) - 12
    header = [wrapped for text in header for wrapped in wrap_to_width(text, font, text_width)]
    footer = wrap_to_width(disclaimer, font, text_width)
    top = line * (len(header) + 1) + 8
    bottom = line * (len(footer) + 1) + 8
    canvas = Image.new("RGB", (width * len(panels), height + top + bottom), (20, 20, 20))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(header):
        draw.text((6, 4 + i * line), text, fill=(255, 255, 255), font=font)
    for p, (title, array) in enumerate(panels):
        canvas.paste(Image.fromarray(array), (p * width, top))
        draw.text((p * width + 6, top - line - 2), title, fill=(200, 200, 200), font=font)
    x = 6
    for label, colour in legend:
        draw.rectangle((x, height + top + 6, x + 10, height + top + 16), fill=colour)
        draw.text((x + 14, height + top + 3), label, fill=(230, 230, 230), font=font)
        x += 24 + int(draw.textlength(label, font=font))
    for i, text in enumerate(footer):
        draw.text((6, height + top + line * (i + 1) + 8), text, fill=(255, 180, 180), font=font)
    return canvas


def overlay_image(screening: Screening) -> Image.Image:
    """The overlay picture of a 2-D screening (radiograph or CT slice) as an RGB image."""
    grey = preview_array(screening.image, max_side=DISPLAY_SIDE)
    if max(grey.shape) < MIN_DISPLAY_SIDE:
        scale = MIN_DISPLAY_SIDE / max(grey.shape)
        grey = _resize_smooth(grey, (round(grey.shape[0] * scale), round(grey.shape[1] * scale)))
    panels = _panels(screening, grey)
    return _compose(panels, _header(screening), _legend(screening), screening.result.disclaimer)


def series_strip(screening: Screening, n: int = STRIP_SLICES) -> Image.Image:
    """Evenly spaced slices of a CT series (lung window) with lung contour and lesions, as one strip."""
    from chestlens.io.windowing import lung_window

    volume = screening.image.pixels
    picks = np.linspace(0, volume.shape[0] - 1, min(n, volume.shape[0])).round().astype(int)
    tiles = []
    for index in picks:
        grey = (lung_window(volume[index]) * 255).astype(np.uint8)
        tile = np.repeat(grey[..., None], 3, axis=2)
        if screening.lesion_map is not None:
            labels = resize_nearest(screening.lesion_map[index], grey.shape)
            for k, label in enumerate(screening.lesion_labels, start=1):
                tile = _blend(tile, labels == k, _lesion_colour(label, k), MASK_ALPHA)
        if screening.lung_mask is not None:
            tile[_contour(screening.lung_mask[index])] = LUNG_COLOUR
        tiles.append(np.asarray(Image.fromarray(tile).resize((192, 192), Image.Resampling.BILINEAR)))
    header = [*_header(screening), "slices " + ", ".join(str(i) for i in picks)]
    panels = [(f"slice {i}", t) for i, t in zip(picks, tiles, strict=True)]
    return _compose(panels, header, _legend(screening), screening.result.disclaimer)


def burden_plot(screening: Screening) -> Image.Image:
    """Lesion share of the lung area per slice (percent) of a CT series, one line per lesion class."""
    figure = Figure(figsize=(6, 3), dpi=100)
    axes = figure.subplots()
    lungs = screening.lung_mask
    lesion_map = screening.lesion_map
    if lesion_map is not None and lungs is not None:
        lung_grid = resize_nearest(lungs, lesion_map.shape[-2:])
        per_slice_lung = np.maximum(lung_grid.sum(axis=(1, 2)), 1)
        for k, label in enumerate(screening.lesion_labels, start=1):
            share = ((lesion_map == k) & lung_grid).sum(axis=(1, 2)) / per_slice_lung * 100
            colour = np.asarray(_lesion_colour(label, k)) / 255
            axes.plot(share, label=label.replace("_", " "), color=colour)
        axes.legend(loc="upper right")
    axes.set_xlabel("slice (inferior to superior)")
    axes.set_ylabel("% of lung area")
    axes.set_title("Lesion burden per slice (research use only)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def save_overlays(screening: Screening, folder: Path, stem: str) -> list[Path]:
    """Write the overlay PNG(s) of a screening into ``folder`` as ``<stem>.png`` (and for a CT series
    ``<stem>_strip.png`` and ``<stem>_burden.png``); every file is written atomically."""
    pictures = (
        {"_strip": series_strip(screening), "_burden": burden_plot(screening)}
        if screening.image.is_volume
        else {"": overlay_image(screening)}
    )
    written = []
    for suffix, picture in pictures.items():
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        written.append(write_bytes_atomic(Path(folder) / f"{stem}{suffix}.png", buffer.getvalue()))
    return written
