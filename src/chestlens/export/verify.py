"""Check exported graphs against PyTorch on real images, and judge the fp16 / int8 variants.

* fp32: the largest absolute difference between ONNX Runtime's probabilities and the PyTorch path of
  the screening pipeline (:func:`chestlens.data.transforms.normalise`, the network, temperature
  softmax or sigmoid) must stay below :data:`FP32_TOLERANCE`.
* fp16 / int8: the macro AUC change on the labelled test images (classifiers) or the Dice agreement of
  the masks with the fp32 masks (segmenters), the size and the speed against fp32. A variant whose
  macro AUC drops by more than :data:`MAX_AUC_DROP` (or whose masks agree with Dice below
  :data:`MIN_DICE_AGREEMENT`) is reported as not usable.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestlens.data.lung_roi import lung_roi_input
from chestlens.data.transforms import normalise
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.metrics import binary_auc
from chestlens.io import read_image
from chestlens.models.bundle import Bundle
from chestlens.models.kinds import kind_of, require_graph
from chestlens.models.spec import BundleSpec
from chestlens.models.tta import tta_logits
from chestlens.preprocess.graph_io import INPUT_NAME, graph_feeds
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.preprocess.units import to_unit_range

FP32_TOLERANCE = 1e-4
MAX_AUC_DROP = 0.005
MIN_DICE_AGREEMENT = 0.99
TIMING_REPEATS = 20


@dataclass(frozen=True, slots=True)
class VerificationSet:
    """Real images for the checks: unit images ``(1, 1, H, W)`` float32, and class indices ``(N,)``
    into the bundle's labels (None for segmenters or unlabelled images).

    ``lungs`` holds each image's lung mask on the lung segmenter's grid for classifiers that read the
    lung fields (:func:`with_lungs`); empty otherwise.
    """

    units: list[np.ndarray]
    targets: np.ndarray | None
    description: str
    lungs: list[np.ndarray] = field(default_factory=list)

    def feeds(self, preprocess: PreprocessSpec) -> list[dict[str, np.ndarray]]:
        """The graph's inputs for every image (:func:`chestlens.preprocess.graph_io.graph_feeds`)."""
        masks = self.lungs or [None] * len(self.units)
        return [graph_feeds(preprocess, u, m) for u, m in zip(self.units, masks, strict=True)]


def with_lungs(data: VerificationSet, spec: BundleSpec) -> VerificationSet:
    """``data`` with the lung masks that a lung-field classifier needs (from the lung segmenter its
    training used, else the bundled ``lungs-segmenter``); unchanged for any other bundle."""
    from chestlens.models.inference import masker_for

    masker = None if data.lungs else masker_for(spec)
    if masker is None:
        return data
    return replace(data, lungs=masker([torch.from_numpy(unit[0]) for unit in data.units]))


def unit_image(path: Path, spec: BundleSpec) -> np.ndarray:
    """Read an image file (or a CT series: its middle slice) into the graphs' input: ``(1, 1, H, W)``
    float32 in ``[0, 1]``."""
    image = read_image(path)
    if image.is_volume:
        image = replace(image, pixels=image.pixels[len(image.pixels) // 2])
    return np.ascontiguousarray(to_unit_range(image, spec.preprocess))[None, None]


def ort_session(path: Path, threads: int = 2) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_probabilities(session: Any, feeds: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
    """The ``probabilities`` output for each image's feeds, stacked: ``(N, C)`` or ``(N, K, S, S)``."""
    return np.concatenate([session.run(["probabilities"], feed)[0] for feed in feeds])


def torch_probabilities(bundle: Bundle, data: VerificationSet) -> np.ndarray:
    """The PyTorch pipeline's probabilities for each image (same layout as :func:`ort_probabilities`):
    the screener's preprocessing (:func:`chestlens.data.lung_roi.lung_roi_input`), network (averaged over a
    segmenter's test-time augmentation, ``preprocess.tta``), outputs."""
    spec = bundle.spec
    probabilities = require_graph(spec, bundle.path).probabilities
    assert probabilities is not None  # every kind with a graph has class probabilities
    network = bundle.build_model().float().eval()
    masks = data.lungs or [None] * len(data.units)
    outputs = []
    with torch.no_grad():
        for unit, lungs in zip(data.units, masks, strict=True):
            image = lung_roi_input(torch.from_numpy(unit[0]), lungs, spec.preprocess)
            logits = tta_logits(network, normalise(image, spec.preprocess)[None], spec.preprocess.tta).float()
            outputs.append(probabilities(logits, spec).numpy())
    return np.concatenate(outputs)


def macro_auc(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean one-vs-rest ROC-AUC over the classes present (NaN-free classes only)."""
    aucs = [binary_auc(targets == k, probabilities[:, k]) for k in range(probabilities.shape[1])]
    return float(np.nanmean(aucs))


def ms_per_image(session: Any, feed: dict[str, np.ndarray], repeats: int = TIMING_REPEATS) -> float:
    """Median wall milliseconds of one image's feeds through ``session`` (after two warm-up runs)."""
    for _ in range(2):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def check_fp32(bundle: Bundle, path: Path, data: VerificationSet) -> dict[str, Any]:
    """Parity of the fp32 graph with PyTorch (module docstring)."""
    if not data.units:
        raise ChestlensInputError(path, "no images to verify the export on")
    data = with_lungs(data, bundle.spec)
    ours = ort_probabilities(ort_session(path), data.feeds(bundle.spec.preprocess))
    reference = torch_probabilities(bundle, data)
    diff = float(np.abs(ours.astype(np.float64) - reference).max())
    return {
        "reference": "PyTorch (chestlens preprocessing + network)",
        "images": data.description,
        "n_images": len(data.units),
        "max_abs_diff_probabilities": diff,
        "tolerance": FP32_TOLERANCE,
        "passed": diff < FP32_TOLERANCE,
    }


def check_variant(
    spec: BundleSpec, fp32: Path, variant: Path, data: VerificationSet, *, threads: int = 2
) -> dict[str, Any]:
    """Quality, size and speed of an fp16 / int8 file against the fp32 file (module docstring)."""
    if kind_of(spec).image_labels and data.targets is None:
        raise ChestlensInputError(variant, "a classifier variant is judged by AUC: it needs labelled images")
    base, other = ort_session(fp32, threads), ort_session(variant, threads)
    feeds = with_lungs(data, spec).feeds(spec.preprocess)
    p_base, p_other = ort_probabilities(base, feeds), ort_probabilities(other, feeds)
    report: dict[str, Any] = {
        "images": data.description,
        "n_images": len(data.units),
        "max_abs_diff_probabilities_vs_fp32": float(np.abs(p_base - p_other).max()),
        "size_bytes": variant.stat().st_size,
        "size_ratio_vs_fp32": variant.stat().st_size / fp32.stat().st_size,
    }
    if kind_of(spec).image_labels:
        auc_base, auc_other = macro_auc(data.targets, p_base), macro_auc(data.targets, p_other)
        report |= {
            "macro_auc_fp32": auc_base,
            "macro_auc": auc_other,
            "macro_auc_change": auc_other - auc_base,
            "usable": auc_other - auc_base >= -MAX_AUC_DROP,
            "rule": f"usable when the macro AUC drops by at most {MAX_AUC_DROP}",
        }
    else:
        dice = mask_agreement(p_base, p_other)
        report |= {
            "mean_dice_vs_fp32": dice,
            "usable": dice >= MIN_DICE_AGREEMENT,
            "rule": f"usable when the masks agree with the fp32 masks at Dice >= {MIN_DICE_AGREEMENT}",
        }
    ms_base, ms_other = ms_per_image(base, feeds[0]), ms_per_image(other, feeds[0])
    report |= {
        "timing_image_shape": list(feeds[0][INPUT_NAME].shape),
        "ort_threads": threads,
        "ms_per_image_fp32": ms_base,
        "ms_per_image": ms_other,
        "speedup_vs_fp32": ms_base / ms_other,
    }
    return report


def mask_agreement(base: np.ndarray, other: np.ndarray) -> float:
    """Mean Dice of the foreground masks (threshold 0.5, or argmax > 0 for softmax) of two runs."""
    if base.shape[1] == 1:
        a, b = base[:, 0] >= 0.5, other[:, 0] >= 0.5
    else:
        a, b = base.argmax(1) > 0, other.argmax(1) > 0
    scores = []
    for x, y in zip(a, b, strict=True):
        total = x.sum() + y.sum()
        scores.append(1.0 if total == 0 else 2.0 * (x & y).sum() / total)
    return float(np.mean(scores))
