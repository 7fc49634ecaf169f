"""The screening result: a versioned JSON schema (pydantic) shared by the API, CLI, server and DICOM out.

Units: areas in mm² (``None`` when the image has no pixel spacing), volumes in mL, fractions in
``[0, 1]``, probabilities calibrated with the bundle's temperature. The JSON Schema itself is
``ScreeningResult.model_json_schema()``. Bump
:data:`SCHEMA_VERSION` on any change a consumer could notice: a new required field or a changed meaning
is a major bump, a new optional field a minor one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.strict import StrictModel

SCHEMA_VERSION = "1.5"  # 1.1: CT series slice scores, series score, total lung involvement; 1.2: runtime,
# CT classification (slice indices and probabilities of a series), the "cam" heatmap method; 1.3: what the
# headline output means (classification.meaning), the reader's warnings (input.warnings), CT series
# lesions as 3-D instances (lesion slices, volume_ml); 1.4: CT series per-slice lung involvement, the
# series verdict and its threshold; 1.5: CT series lesion features (lesions.features) and the series-level
# study classification (series_classification)


#: The verdict on a CT series (:func:`chestlens.pipeline.measure.series_verdict`).
SeriesVerdict = Literal["lesions found", "no lesions found"]


class ModelRef(StrictModel):
    """Which bundle produced part of a result."""

    name: str
    version: str
    kind: Literal["classifier", "segmenter", "detector", "study"]
    weights_sha256: str


class InputInfo(StrictModel):
    """The image as read (never patient identity; ``patient_key`` is a salted hash)."""

    source: str  # file name as given on the command line, or the upload's server-side name
    format: str
    modality: str | None
    body_part: str | None
    view: str | None
    rows: int
    cols: int
    n_slices: int = 1
    pixel_spacing_mm: tuple[float, float] | None
    patient_key: str | None = None
    # What the reader found wrong or changed (missing slices, ignored series, masked NaN pixels, the first
    # page of a multi-page TIFF...), as chestlens.io reports it in ImageMeta.warnings.
    warnings: list[str] = Field(default_factory=list)


class GateCheck(StrictModel):
    """One quality-gate test and its outcome."""

    name: str  # e.g. "dicom_modality", "colour", "lung_fields"
    passed: bool
    detail: str


class GateVerdict(StrictModel):
    """Input quality gate: is this a frontal chest radiograph or a chest CT slice/series?"""

    accepted: bool
    image_type: Literal["chest_radiograph", "chest_ct", "unknown"]
    reason: str  # one line: why it was accepted or rejected
    checks: list[GateCheck] = Field(default_factory=list)


class Decision(StrictModel):
    """A decision at a bundle operating point (threshold chosen on validation data)."""

    label: str
    threshold: float
    positive: bool
    criterion: str


class Classification(StrictModel):
    """Calibrated class probabilities and decisions at the operating points."""

    model: ModelRef
    probabilities: dict[str, float]  # label -> calibrated probability, summing to 1
    top_label: str
    temperature: float
    decisions: list[Decision] = Field(default_factory=list)
    # CT series only: the classified slices (volume order) and their probabilities (label order); the
    # series probabilities above are their mean.
    slice_indices: list[int] | None = None
    slice_probabilities: list[list[float]] | None = None
    # One line from the bundle's within-source figures (chestlens.models.meaning); None without them.
    meaning: str | None = None


class Explanation(StrictModel):
    """Class-activation map for the top label (the map itself is an overlay image, not in the JSON)."""

    method: Literal["cam", "gradcam", "gradcam++", "hirescam"]  # cam: the graph's class-activation map
    target_label: str
    layer: str
    energy_in_lungs: float | None  # share of the heatmap's total mass inside the lung mask


class LungMeasurement(StrictModel):
    """The lung fields found by the lung segmenter (or the HU rule for CT without a segmenter)."""

    model: ModelRef | None  # None: CT lungs from a Hounsfield-unit rule
    area_mm2: float | None
    area_fraction: float  # share of the image
    volume_ml: float | None = None  # CT series only


class Lesion(StrictModel):
    """One connected lesion region of one class."""

    label: str  # e.g. "ground_glass_opacity", "consolidation"
    area_mm2: float | None
    area_pixels: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels (exclusive end)
    score: float  # mean predicted probability inside the region
    # CT series: a lesion is a 3-D connected region; slice_index is its largest cross-section, slices the
    # first and last slice it spans (volume order), volume_ml its volume (None without slice spacing).
    slice_index: int | None = None
    slices: tuple[int, int] | None = None
    volume_ml: float | None = None


class LesionFeatures(StrictModel):
    """What a CT series' lesions look like as a whole; each is defined in
    :func:`chestlens.pipeline.study_features.series_lesion_features`. Volumes in mL, shares in ``[0, 1]``,
    burden in % of the lungs; the shares are 0 when the series has no lesion voxel."""

    lung_volume_ml: float
    lesion_volume_ml: float
    burden_pct: float  # lesion volume inside the lungs over lung volume, in %
    ggo_share: float  # ground-glass share of the lesion volume
    peripheral_share: float  # share of the lesion volume in the outer third of each lung (in-plane)
    bilateral: bool  # both lungs hold at least MIN_LESION_ML of lesion
    smaller_side_share: float  # the less involved lung's share of the lesion volume, in [0, 0.5]
    lower_zone_share: float  # share of the lesion volume in the lower half of the lungs' z-extent
    midline_column: float  # where the series was split into left and right (grid column of the body)


class LesionSummary(StrictModel):
    """Lesion segmentation, gated as the bundle says (e.g. only when the classifier says positive)."""

    model: ModelRef
    ran: bool
    gate: str  # why it ran or not
    lesions: list[Lesion] = Field(default_factory=list)
    area_mm2_by_label: dict[str, float] = Field(default_factory=dict)
    volume_ml_by_label: dict[str, float] = Field(default_factory=dict)
    lung_fraction_by_label: dict[str, float] = Field(default_factory=dict)
    # Shares of the lungs (the lung mask plus the lesion regions touching it, so that dense consolidation
    # left out by a Hounsfield-unit lung rule counts): per class, and all classes together.
    lung_fraction_total: float | None = None
    # CT series only, in the volume's slice order (ascending patient z, inferior first): each slice's
    # largest mean lesion probability over its lesion regions inside the lungs (0: no region), and the
    # series score (the largest slice score: how sure the segmenter is that the series shows a lesion).
    slice_scores: list[float] | None = None
    series_score: float | None = None
    # CT series only: each slice's share of its lungs covered by lesions (volume order, 0 without lungs);
    # the verdict on the series, "lesions found" when lung_fraction_total reaches series_threshold (the
    # lesion bundle's share of the lungs, chosen on labelled slices; no verdict when the bundle has none).
    slice_lung_fractions: list[float] | None = None
    series_threshold: float | None = None
    series_verdict: SeriesVerdict | None = None
    # CT series only: lesion burden and distribution (None without a voxel size, e.g. missing slices).
    features: LesionFeatures | None = None


class SeriesClassification(StrictModel):
    """A CT series classified as a whole by a study bundle from its lesion features (research use only,
    never a diagnosis; see the bundle's card for how few patients it was trained on)."""

    model: ModelRef
    probabilities: dict[str, float]  # label -> probability, summing to 1
    top_label: str
    features: dict[str, float]  # the model's inputs as read from lesions.features
    lesion_model: ModelRef  # the lesion segmenter whose lesions were measured
    note: str


class ScreeningResult(StrictModel):
    """Everything chestlens says about one input. Research use only, never a diagnosis."""

    schema_version: str = SCHEMA_VERSION
    chestlens_version: str
    disclaimer: str = RESEARCH_USE_DISCLAIMER
    runtime: Literal["onnx", "torch"] | None = None  # which runtime ran the model graphs
    input: InputInfo
    gate: GateVerdict
    classification: Classification | None = None
    explanation: Explanation | None = None
    lungs: LungMeasurement | None = None
    lesions: LesionSummary | None = None
    series_classification: SeriesClassification | None = None  # CT series with a study bundle loaded
    timings_ms: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class FailedInput(StrictModel):
    """An input that could not be read: reported and skipped, never fatal to a batch."""

    schema_version: str = SCHEMA_VERSION
    source: str
    error: str
