"""``chestlens export onnx``: a bundle to verified ``.onnx`` files with JSON sidecars.

Each file gets its JSON sidecar (:mod:`chestlens.export.sidecar`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chestlens.atomic import write_text_atomic
from chestlens.export.onnx_export import (
    DEFAULT_OPSET,
    convert_fp16,
    export_fp32,
    model_file,
    quantize_int8,
)
from chestlens.export.sidecar import sidecar
from chestlens.export.verify import VerificationSet, check_fp32, check_variant, with_lungs
from chestlens.models.bundle import Bundle, load_bundle


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
        described = sidecar(spec, model.path, model.variant, report.checks[model.variant])
        write_text_atomic(sidecar_path, json.dumps(described, indent=2) + "\n")
        report.files[model.variant] = model.path
    return report
