"""``chestlens export onnx``: a bundle to verified ``.onnx`` files with JSON sidecars.

The sidecar (``NAME[.VARIANT].json``) is generated from ``bundle.json``: labels, preprocessing, the
calibration temperature, operating points, the graph's inputs and outputs, and the verification
results, so the browser and other consumers never restate any of them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chestlens import RESEARCH_USE_DISCLAIMER, __version__
from chestlens.atomic import write_text_atomic
from chestlens.export.onnx_export import (
    DEFAULT_OPSET,
    ExportedModel,
    convert_fp16,
    export_fp32,
    model_file,
    quantize_int8,
)
from chestlens.export.verify import VerificationSet, check_fp32, check_variant, with_lungs
from chestlens.models.bundle import Bundle, load_bundle
from chestlens.models.spec import BundleSpec
from chestlens.preprocess.graph_io import INPUT_NAME, input_names, output_names
from chestlens.preprocess.lung_roi import MASK_FILL, mask_radius

SIDECAR_FORMAT = "chestlens-onnx"
SIDECAR_VERSION = 1


@dataclass(slots=True)
class ExportReport:
    """What an export wrote and how each file fared: ``checks[variant]`` is its verification dict."""

    bundle: str
    files: dict[str, Path] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """The fp32 parity check passed (variants may still be reported as not usable)."""
        return bool(self.checks.get("fp32", {}).get("passed"))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sidecar(spec: BundleSpec, model: ExportedModel, verification: dict[str, Any]) -> dict[str, Any]:
    """The JSON sidecar of one exported file (module docstring)."""
    outputs = {
        "logits": "(N, C) raw class scores",
        "probabilities": "(N, C) softmax(logits / temperature)"
        if spec.kind == "classifier"
        else "(N, K, S, S) per-class probabilities (sigmoid if K == 1, else softmax; channel 0 background)",
        "cam": "(N, C, S, S) class-activation maps, min-max scaled to [0, 1] per map",
    }
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
        "variant": model.variant,
        "file": model.path.name,
        "size_bytes": model.size_bytes,
        "sha256": sha256_file(model.path),
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
        "outputs": {name: outputs[name] for name in output_names(spec.kind)},
        "lung_roi": {"mask_radius": mask_radius(spec.preprocess.input_size), "mask_fill": MASK_FILL},
        "verification": verification,
        "disclaimer": RESEARCH_USE_DISCLAIMER,
        "chestlens_version": __version__,
    }


def export_bundle(
    bundle: str | Path | Bundle,
    out: Path,
    check_set: VerificationSet,
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    calibration: VerificationSet | None = None,
) -> ExportReport:
    """Export, verify and describe one bundle (see :mod:`chestlens.export.onnx_export` for the files).

    Args:
        check_set: real images for the checks (:mod:`chestlens.export.images`).
        calibration: images for the int8 variant (None: no int8 variant).
    """
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    spec = loaded.spec
    out.mkdir(parents=True, exist_ok=True)
    report = ExportReport(bundle=f"{spec.name} {spec.version}")
    base = export_fp32(loaded, model_file(out, spec.name, "fp32"), opset=opset)
    exported = [base]
    report.checks["fp32"] = check_fp32(loaded, base.path, check_set)
    if fp16:
        exported.append(convert_fp16(base.path, model_file(out, spec.name, "fp16")))
    if calibration is not None:
        feeds = with_lungs(calibration, spec).feeds(spec.preprocess)
        exported.append(quantize_int8(base.path, model_file(out, spec.name, "int8"), feeds))
    for model in exported[1:]:
        report.checks[model.variant] = check_variant(spec, base.path, model.path, check_set) | {
            "calibration_images": len(calibration.units) if calibration and model.variant == "int8" else None
        }
    for model in exported:
        sidecar_path = model.path.with_suffix(".json")
        text = json.dumps(sidecar(spec, model, report.checks[model.variant]), indent=2) + "\n"
        write_text_atomic(sidecar_path, text)
        report.files[model.variant] = model.path
    return report
