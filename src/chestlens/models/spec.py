"""``bundle.json``: everything about a model except its weights, readable without PyTorch.

A bundle folder holds ``bundle.json`` (:class:`BundleSpec`), ``weights.safetensors`` (the PyTorch
state dict, :mod:`chestlens.models.bundle`) and ``model.onnx`` (the inference graph with the bundle's
preprocessing, :mod:`chestlens.runtime`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from chestlens.atomic import write_text_atomic
from chestlens.errors import ChestlensInputError
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.strict import StrictModel

BUNDLE_JSON = "bundle.json"
WEIGHTS_FILE = "weights.safetensors"
GRAPH_FILE = "model.onnx"
FORMAT_VERSION = 1


class ClassThreshold(StrictModel):
    """A decision threshold on one class's calibrated probability, chosen on validation data.

    Stored in ``BundleSpec.operating_points`` and applied, in order, by
    ``chestlens.evaluate.DecisionRule``: flag ``label`` when its probability is ``>= threshold``.
    """

    label: str
    threshold: float = Field(ge=0.0, le=1.0)
    criterion: str = ""  # e.g. "sensitivity>=0.95 on validation"
    validation_sensitivity: float | None = None
    validation_specificity: float | None = None


class GraphRecord(StrictModel):
    """The bundle's ONNX graph (``model.onnx``) and its parity check against PyTorch at export time."""

    file: str = GRAPH_FILE
    sha256: str
    opset: int = Field(gt=0)
    parity_images: str  # which real images the check used
    parity_n_images: int = Field(ge=1)
    max_abs_diff_probabilities: float = Field(ge=0.0)
    tolerance: float = Field(gt=0.0)


class DataSummary(StrictModel):
    """The data a model was trained and tested on (``training.data``)."""

    images_per_source_class_split: dict[str, dict[str, dict[str, int]]] = Field(default_factory=dict)
    patients_per_split: dict[str, int] = Field(default_factory=dict)
    split_seed: int | None = None
    excluded_per_source: dict[str, int] = Field(default_factory=dict)
    confounder_warnings: list[str] = Field(default_factory=list)


class Selection(StrictModel):
    """How the shipped model was chosen among candidate runs (``chestlens train select``)."""

    metric: str
    chosen: str
    candidates: list[dict[str, Any]]  # one row per candidate run: its folder, score and figures


class InstanceRule(StrictModel):
    """How a detector's true instances were made from the lesion masks."""

    rule: str
    min_area_px: int = Field(ge=0)


class BundleRef(StrictModel):
    """Another bundle this one was built over (a regional bundle's detector or segmenter)."""

    name: str
    version: str
    weights_sha256: str


class TrainingSummary(StrictModel):
    """How a model was made (``bundle.json``'s ``training``); fields a kind or a run does not have are
    left out of the file.

    ``config`` is the resolved training config of the bundle's trainer (its pydantic config dumped as
    JSON); ``history`` one record per epoch (``epoch``, ``train_loss``, the validation figures and
    ``seconds``); ``fp16_check`` the fp16-storage check of the kind's trainer
    (:mod:`chestlens.train.fp16`).
    """

    config: dict[str, Any] = Field(default_factory=dict)
    data: DataSummary | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool | None = None
    train_seconds: float | None = None
    device: str | None = None
    threads: int | None = None
    fp16_check: dict[str, Any] | None = None
    reproduce: str | None = None  # the command that reproduces the model (read by the card)
    selection: Selection | None = None
    comparison: list[dict[str, Any]] | None = None  # recipe rows the card compares (train select)
    candidate: dict[str, Any] | None = None  # bench/compare_screeners.py: the candidate it replaced
    previous_version: dict[str, Any] | None = None  # bench/compare_screeners.py: what it replaced
    recipe_grid: dict[str, Any] | None = None  # the cross-validated grid the recipe was chosen from
    instances: InstanceRule | None = None  # detectors
    detector: BundleRef | None = None  # regional bundles over a detector
    segmenter: BundleRef | None = None  # regional bundles over a segmenter's components
    split: dict[str, Any] | None = None  # regional bundles: how the slices were split; fit_all segmenters

    @property
    def fitted_on_all_data(self) -> bool:
        """True for a segmenter fitted on every image (``train segment --set fit_all=true``): it has no
        validation or test split of its own."""
        return bool((self.split or {}).get("fit_all"))

    @property
    def fold_ensemble(self) -> int | None:
        """The member count of a fold ensemble (``train segment --folds K --ensemble``), else None."""
        return (self.split or {}).get("fold_ensemble")

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out fields that are None, so ``bundle.json`` holds only what the run recorded."""
        return {key: value for key, value in handler(self).items() if value is not None}


class BundleSpec(StrictModel):
    """Everything about a model except its weights (``bundle.json``)."""

    format: Literal["chestlens-bundle"] = "chestlens-bundle"
    format_version: int = FORMAT_VERSION
    name: str
    version: str
    kind: Literal["classifier", "segmenter", "detector", "regional", "study"]  # chestlens.models.kinds.KINDS
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
    # CT lesion segmenters: a series is "lesions found" when its lesions cover at least this share of its
    # lungs (0-1), chosen for these weights on labelled slices by ``chestlens calibrate-series``; None: the
    # series gets its measurements and no verdict.
    series_threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    training: TrainingSummary = Field(default_factory=TrainingSummary)
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


def spec_json(spec: BundleSpec) -> str:
    """The text of ``bundle.json`` for ``spec``."""
    return json.dumps(spec.model_dump(mode="json"), indent=2) + "\n"


def write_spec(folder: str | Path, spec: BundleSpec) -> Path:
    """Write ``spec`` as ``folder/bundle.json`` atomically (the weights are not touched); returns the file."""
    return write_text_atomic(Path(folder) / BUNDLE_JSON, spec_json(spec))
