"""The CT window that makes Hounsfield-unit series look like the Inf-Net training slices.

    python bench/ct_window_match.py [--root DATA] [--json bench/results/ct_window_match.json]

The CT lesion segmenter learns on the MedSeg slices that Inf-Net packaged as 8-bit JPEG pictures (not
HU); at screening time it reads DICOM series in HU, which its bundle windows to ``[0, 1]``
(``preprocess.ct_window``). The window is right when the two look alike. Two landmarks that need no
lesion label fix a linear window:

* Inf-Net: the grey-level modes of aerated lung (pixels below 128) and of soft tissue (128-247; 248-255
  is saturated bone) over all lesion slices, and where their GGO and consolidation pixels sit;
* each COVID-CT-MD series: the HU mode of aerated lung inside the HU lung mask
  (:func:`chestlens.pipeline.ct_lungs.lung_mask_from_hu`) and the mode of muscle (non-lung voxels in
  0-100 HU).

Mapping lung mode to lung mode and muscle mode to soft-tissue mode gives a (centre, width) per series;
the table also says which HU the Inf-Net GGO and consolidation grey levels then stand for, a check that
needs no label either (GGO is about -700 to -300 HU, consolidation about -100 to +50).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from common import json_main
from scipy.ndimage import gaussian_filter1d

from chestlens.data.registry import load_samples
from chestlens.data.root import data_root
from chestlens.data.tasks import get_segmentation_target, target_label_map
from chestlens.io.reader import read_image
from chestlens.io.series import read_series
from chestlens.pipeline.ct_lungs import lung_mask_from_hu

#: Saturated bone and the window's top: soft-tissue grey levels are read below this.
SATURATED = 248
#: Muscle in HU (the soft-tissue landmark of an HU series).
MUSCLE_HU = (0.0, 100.0)


def histogram_mode(values: np.ndarray, low: float, high: float, bins: int) -> float:
    """The centre of the fullest bin of a lightly smoothed histogram of ``values`` in ``[low, high)``."""
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    smooth = gaussian_filter1d(counts.astype(float), 2)
    return float((edges[:-1] + edges[1:])[smooth.argmax()] / 2)


def infnet_landmarks(root: Path) -> dict[str, float]:
    """Grey-level (0-255) landmarks of the Inf-Net lesion slices."""
    target = get_segmentation_target("lesions-ct")
    grey, ggo, consolidation = [], [], []
    for sample in load_samples(root, ["infnet"]):
        if not target.mapping(sample):
            continue
        pixels = np.round(read_image(sample.path).pixels * 255.0)
        labels = np.asarray(target_label_map("lesions-ct", sample.masks.load()))
        grey.append(pixels.ravel())
        ggo.append(pixels[labels == 1])
        consolidation.append(pixels[labels == 2])
    values = np.concatenate(grey)
    return {
        "n_slices": len(grey),
        "lung_mode": histogram_mode(values[values < 128], 0, 128, 64),
        "soft_tissue_mode": histogram_mode(
            values[(values >= 128) & (values < SATURATED)], 128, SATURATED, 60
        ),
        "ggo_median": float(np.median(np.concatenate(ggo))),
        "consolidation_median": float(np.median(np.concatenate(consolidation))),
    }


def series_window(folder: Path, infnet: dict[str, float]) -> dict[str, Any]:
    """The HU landmarks of one series and the window that maps them onto the Inf-Net grey landmarks."""
    hu = read_series(folder).pixels
    lungs = lung_mask_from_hu(hu)
    rest = hu[~lungs]
    lung_hu = histogram_mode(hu[lungs], -1000, -500, 100)
    muscle_hu = histogram_mode(rest[(rest >= MUSCLE_HU[0]) & (rest < MUSCLE_HU[1])], *MUSCLE_HU, 50)
    width = (muscle_hu - lung_hu) * 255.0 / (infnet["soft_tissue_mode"] - infnet["lung_mode"])
    low = lung_hu - infnet["lung_mode"] / 255.0 * width
    return {
        "series": folder.name,
        "lung_mode_hu": lung_hu,
        "muscle_mode_hu": muscle_hu,
        "window_centre": low + width / 2,
        "window_width": width,
        "infnet_ggo_as_hu": low + infnet["ggo_median"] / 255.0 * width,
        "infnet_consolidation_as_hu": low + infnet["consolidation_median"] / 255.0 * width,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = data_root(args.root)
    infnet = infnet_landmarks(root)
    folders = sorted(p for p in (root / "covid-ct-md" / "Sample data").glob("*/*") if p.is_dir())
    folders += sorted(p for p in (root / "covid-ct-md" / "Sample data").glob("*") if any(p.glob("*.dcm")))
    rows = [series_window(folder, infnet) for folder in folders]
    centre = float(np.median([r["window_centre"] for r in rows]))
    width = float(np.median([r["window_width"] for r in rows]))
    print(
        f"Inf-Net ({infnet['n_slices']} slices): lung mode {infnet['lung_mode']:.0f}, soft tissue "
        f"{infnet['soft_tissue_mode']:.0f}, GGO median {infnet['ggo_median']:.0f}, consolidation median "
        f"{infnet['consolidation_median']:.0f} (grey 0-255)"
    )
    print(
        "| series | lung mode (HU) | muscle mode (HU) | window centre / width (HU) "
        "| Inf-Net GGO / consolidation as HU |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['series']} | {r['lung_mode_hu']:.0f} | {r['muscle_mode_hu']:.0f} "
            f"| {r['window_centre']:.0f} / {r['window_width']:.0f} "
            f"| {r['infnet_ggo_as_hu']:.0f} / {r['infnet_consolidation_as_hu']:.0f} |"
        )
    print(f"median window: centre {centre:.0f} HU, width {width:.0f} HU (the lung preset is -600 / 1500)")
    return {"infnet": infnet, "series": rows, "median_window": [centre, width]}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help="data root (default: $CHESTLENS_DATA or ../shared/data)")


if __name__ == "__main__":
    json_main(__doc__.splitlines()[0], None, configure, run)
