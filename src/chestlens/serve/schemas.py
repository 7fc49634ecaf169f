"""The API's response bodies (pydantic; they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from chestlens.models.spec import ClassThreshold
from chestlens.pipeline.schema import ScreeningResult
from chestlens.serve.layers import SERIES, SOURCES, SeriesSlices, series_layers
from chestlens.serve.store import StoredJob, StoredScreening

API = "/api/v1"
SliceLayer = Literal["image", "lungs", "lesions"]


class SliceLinks(BaseModel):
    """Where the slices of a CT series are served."""

    count: int = Field(ge=1, description="number of slices; k runs from 0 to count - 1 (inferior first)")
    layers: list[SliceLayer] = Field(description="the layers served for every slice")
    url: str = Field(description="per-slice positions, areas and lesion scores (JSON)")
    template: str = Field(
        description="PNG of one layer of one slice: replace {k} (0-based) and {layer} (one of layers)"
    )


class ScreeningOut(BaseModel):
    """A stored screening: the pipeline's result plus the URLs of its PNG layers (and of its slices)."""

    id: str
    created_at: datetime
    status: Literal["screened", "rejected"]
    result: ScreeningResult
    overlays: dict[str, str] = Field(description="layer name -> URL of its PNG")
    slices: SliceLinks | None = Field(
        default=None,
        description="a CT series: its slices (None for a 2-D image, and for a series stored before the "
        "server kept slices)",
    )


class SliceOut(BaseModel):
    """One slice of a CT series. Areas in mm² (None without a pixel spacing) on the masks' own grids."""

    index: int = Field(ge=0, description="k, 0-based in the volume's slice order (inferior first)")
    position_mm: float | None = Field(
        description="position along the slice normal (mm) by which the series was sorted; None when "
        "sorted by Instance Number or file name"
    )
    lung_area_mm2: float | None
    lesion_area_mm2: dict[str, float] | None = Field(
        description="lesion class -> its area on this slice (mm²; every class, 0 where absent); None "
        "without lesion segmentation or pixel spacing"
    )
    lesion_score: float | None = Field(
        description="the result's slice lesion score (lesions.slice_scores[k]); None when it has none"
    )
    layers: list[SliceLayer] = Field(description="the layers that show something on this slice")


class SeriesSlicesOut(BaseModel):
    """The slices of a CT series: what each shows, and where its PNG layers are."""

    count: int = Field(ge=1)
    rows: int = Field(description="height of the slice PNGs (pixels)")
    cols: int = Field(description="width of the slice PNGs (pixels)")
    layers: list[SliceLayer] = Field(description="the layers served for every slice")
    lesion_labels: list[str] = Field(
        description="the lesion classes in the segmenter's order (their colours in the lesions layer "
        "follow chestlens predict's overlays); empty without lesion segmentation"
    )
    template: str = Field(description="PNG of one layer of one slice: replace {k} and {layer}")
    slices: list[SliceOut]


class WorklistItem(BaseModel):
    """One line of the worklist (recent results of this server)."""

    id: str
    created_at: datetime
    status: Literal["screened", "rejected"]
    image_type: str
    format: str
    top_label: str | None
    positive: list[str] = Field(description="labels decided positive at their operating points")
    gate_reason: str
    url: str


class JobOut(BaseModel):
    """A background job (CT series)."""

    id: str
    status: Literal["queued", "running", "done", "failed"]
    stage: str
    progress: float = Field(ge=0.0, le=1.0)
    error: str | None
    screening_id: str | None
    screening_url: str | None
    created_at: datetime
    updated_at: datetime


class ModelOut(BaseModel):
    """A loaded model bundle and its model card (Markdown)."""

    name: str
    version: str
    kind: str
    task: str
    architecture: str
    labels: list[str]
    temperature: float
    operating_points: list[ClassThreshold]
    weights_sha256: str
    model_card: str | None


class Health(BaseModel):
    status: Literal["ok", "ready"]
    models: list[str] = Field(default_factory=list)


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC time (SQLite gives back naive datetimes)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def slice_template(screening_id: str) -> str:
    """The URL template of a series' slice PNGs (``{k}`` and ``{layer}`` to fill in)."""
    return f"{API}/screenings/{screening_id}/slices/{{k}}/{{layer}}"


def screening_out(stored: StoredScreening) -> ScreeningOut:
    result = ScreeningResult.model_validate_json(stored.result_json)
    slices = None
    if SERIES in stored.layers:
        slices = SliceLinks(
            count=result.input.n_slices,
            layers=series_layers(result),  # type: ignore[arg-type]
            url=f"{API}/screenings/{stored.id}/slices",
            template=slice_template(stored.id),
        )
    return ScreeningOut(
        id=stored.id,
        created_at=utc(stored.created_at),
        status=stored.status,  # type: ignore[arg-type]
        result=result,
        overlays={
            layer: f"{API}/screenings/{stored.id}/overlays/{layer}"
            for layer in stored.layers
            if layer not in SOURCES
        },
        slices=slices,
    )


def series_slices_out(stored: StoredScreening, series: SeriesSlices) -> SeriesSlicesOut:
    """The slices of a stored series (``series``: read from its :data:`SERIES`) with the result's scores."""
    result = ScreeningResult.model_validate_json(stored.result_json)
    scores = None if result.lesions is None else result.lesions.slice_scores
    return SeriesSlicesOut(
        count=series.count,
        rows=series.rows,
        cols=series.cols,
        layers=series_layers(result),  # type: ignore[arg-type]
        lesion_labels=series.lesion_labels,
        template=slice_template(stored.id),
        slices=[
            SliceOut(
                index=k,
                position_mm=facts.position_mm,
                lung_area_mm2=facts.lung_area_mm2,
                lesion_area_mm2=facts.lesion_area_mm2,
                lesion_score=None if scores is None else scores[k],
                layers=facts.layers,  # type: ignore[arg-type]
            )
            for k, facts in enumerate(series.slices)
        ],
    )


def worklist_item(stored: StoredScreening) -> WorklistItem:
    result = ScreeningResult.model_validate_json(stored.result_json)
    classification = result.classification
    return WorklistItem(
        id=stored.id,
        created_at=utc(stored.created_at),
        status=stored.status,  # type: ignore[arg-type]
        image_type=result.gate.image_type,
        format=result.input.format,
        top_label=None if classification is None else classification.top_label,
        positive=[] if classification is None else [d.label for d in classification.decisions if d.positive],
        gate_reason=result.gate.reason,
        url=f"{API}/screenings/{stored.id}",
    )


def job_out(job: StoredJob) -> JobOut:
    return JobOut(
        id=job.id,
        status=job.status,  # type: ignore[arg-type]
        stage=job.stage,
        progress=job.progress,
        error=job.error,
        screening_id=job.screening_id,
        screening_url=None if job.screening_id is None else f"{API}/screenings/{job.screening_id}",
        created_at=utc(job.created_at),
        updated_at=utc(job.updated_at),
    )
