"""The JSON sidecar of an exported ``.onnx`` file (``NAME[.VARIANT].json``), without PyTorch.

Generated from ``bundle.json``: labels, preprocessing, the calibration temperature, operating points, the
graph's inputs and outputs, and the verification results, so the browser and other consumers never
restate any of them. Written by ``chestlens export onnx`` (fresh exports) and ``chestlens export web``
(the bundles' own verified graphs).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from chestlens import RESEARCH_USE_DISCLAIMER, __version__
from chestlens.models.kinds import kind_of
from chestlens.models.spec import BundleSpec
from chestlens.preprocess.graph_io import INPUT_NAME, input_names
from chestlens.preprocess.lung_roi import MASK_FILL, mask_radius

SIDECAR_FORMAT = "chestlens-onnx"
SIDECAR_VERSION = 1


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sidecar(spec: BundleSpec, path: Path, variant: str, verification: dict[str, Any]) -> dict[str, Any]:
    """The JSON sidecar of ``path``, an ``.onnx`` file of ``spec``'s bundle (variant fp32, fp16 or int8)."""
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "name": spec.name,
        "version": spec.version,
        "kind": spec.kind,
        "task": spec.task,
        "labels": spec.labels,
        "preprocess": spec.preprocess.model_dump(mode="json"),
        "temperature": spec.temperature,
        "operating_points": [op.model_dump(mode="json") for op in spec.operating_points],
        "variant": variant,
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "bundle_weights_sha256": spec.weights_sha256,
        "input": {
            "names": list(input_names(spec.preprocess)),
            "name": INPUT_NAME,
            "shape": "(N, 1, H, W) float32, any H and W (lung-field classifiers: cropped to the lungs' box; "
            "with a 'lungs' input of (N, 1, S, S), 1 inside the dilated lungs)",
            "meaning": "grey pixels in [0, 1] after decoding, DICOM VOI or CT windowing "
            "(preprocess.ct_window) and MONOCHROME1 inversion; the graph resizes (antialiased "
            "bilinear) and normalises",
        },
        "outputs": dict(kind_of(spec).graph_outputs),
        "lung_roi": {"mask_radius": mask_radius(spec.preprocess.input_size), "mask_fill": MASK_FILL},
        "verification": verification,
        "disclaimer": RESEARCH_USE_DISCLAIMER,
        "chestlens_version": __version__,
    }
