"""``bundle.json``: everything about a model except its weights, readable without PyTorch.

A bundle folder holds ``bundle.json`` (:class:`BundleSpec`), ``weights.safetensors`` (the PyTorch
state dict, :mod:`chestlens.models.bundle`) and ``model.onnx`` (the inference graph with the bundle's
preprocessing, :mod:`chestlens.runtime`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chestlens.errors import ChestlensInputError
from chestlens.preprocess.spec import PreprocessSpec

BUNDLE_JSON = "bundle.json"
WEIGHTS_FILE = "weights.safetensors"
GRAPH_FILE = "model.onnx"
FORMAT_VERSION = 1


class ClassThreshold(BaseModel):
    """A decision threshold on one class's calibrated probability, chosen on validation data.

    Stored in ``BundleSpec.operating_points`` and applied, in order, by
    ``chestlens.evaluate.DecisionRule``: flag ``label`` when its probability is ``>= threshold``.
    """

    model_config = ConfigDict(extra="forbid")

    label: str
    threshold: float = Field(ge=0.0, le=1.0)
    criterion: str = ""  # e.g. "sensitivity>=0.95 on validation"
    validation_sensitivity: float | None = None
    validation_specificity: float | None = None


class GraphRecord(BaseModel):
    """The bundle's ONNX graph (``model.onnx``) and its parity check against PyTorch at export time."""

    model_config = ConfigDict(extra="forbid")

    file: str = GRAPH_FILE
    sha256: str
    opset: int = Field(gt=0)
    parity_images: str  # which real images the check used
    parity_n_images: int = Field(ge=1)
    max_abs_diff_probabilities: float = Field(ge=0.0)
    tolerance: float = Field(gt=0.0)


class BundleSpec(BaseModel):
    """Everything about a model except its weights (``bundle.json``)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["chestlens-bundle"] = "chestlens-bundle"
    format_version: int = FORMAT_VERSION
    name: str
    version: str
    kind: Literal["classifier", "segmenter", "detector", "regional"]  # chestlens.models.kinds.KINDS
    task: str
    architecture: str
    architecture_kwargs: dict[str, Any] = Field(default_factory=dict)
    labels: list[str]
    preprocess: PreprocessSpec
    temperature: float = Field(default=1.0, gt=0.0)
    operating_points: list[ClassThreshold] = Field(default_factory=list)
    # Segmenters in the screening pipeline: run only when the classifier's decision is positive for one
    # of these labels (empty: always run).
    run_if_positive: list[str] = Field(default_factory=list)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    weights_sha256: str = ""
    weights_dtype: Literal["float32", "float16"] = "float32"
    graph: GraphRecord | None = None  # None: no model.onnx (ONNX Runtime cannot run this bundle yet)
    created_utc: str = ""
    chestlens_version: str = ""


def read_spec(path: str | Path) -> BundleSpec:
    """Read and validate ``bundle.json`` of a bundle folder (a path or a bundled model name)."""
    from chestlens.models.catalog import resolve_bundle

    path = resolve_bundle(path)
    spec_file = path / BUNDLE_JSON
    if not spec_file.is_file():
        raise ChestlensInputError(path, f"not a chestlens bundle (no {BUNDLE_JSON})")
    try:
        return BundleSpec.model_validate_json(spec_file.read_text())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ChestlensInputError(spec_file, f"invalid bundle spec at {where}: {first['msg']}") from error
