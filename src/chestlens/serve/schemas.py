"""The API's response bodies (pydantic; they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from chestlens.models.spec import ClassThreshold
from chestlens.pipeline.schema import ScreeningResult
from chestlens.serve.layers import SOURCE
from chestlens.serve.store import StoredJob, StoredScreening

API = "/api/v1"


class ScreeningOut(BaseModel):
    """A stored screening: the pipeline's result plus the URLs of its PNG layers."""

    id: str
    created_at: datetime
    status: Literal["screened", "rejected"]
    result: ScreeningResult
    overlays: dict[str, str] = Field(description="layer name -> URL of its PNG")


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


def screening_out(stored: StoredScreening) -> ScreeningOut:
    return ScreeningOut(
        id=stored.id,
        created_at=utc(stored.created_at),
        status=stored.status,  # type: ignore[arg-type]
        result=ScreeningResult.model_validate_json(stored.result_json),
        overlays={
            layer: f"{API}/screenings/{stored.id}/overlays/{layer}"
            for layer in stored.layers
            if layer != SOURCE
        },
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
