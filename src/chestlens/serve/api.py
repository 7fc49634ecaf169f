"""Routes under ``/api/v1`` (:data:`router`, with the OpenAPI document) plus ``/healthz`` and ``/readyz``
(:data:`health_router`, never behind an API key).

``POST /api/v1/screenings`` (multipart field ``file``): one image answers 200 with the stored result;
a zip of a DICOM series, or several DICOM files, answers 202 with a job to poll at ``/api/v1/jobs/{id}``.
``DELETE /api/v1/screenings/{id}`` removes a result with its overlays and job (204).
A CT series result also serves its slices: ``GET /api/v1/screenings/{id}/slices`` (JSON: per slice its
position, lung and lesion areas and lesion score) and ``GET /api/v1/screenings/{id}/slices/{k}/{layer}``
(PNG of slice ``k``: ``image``, ``lungs`` or ``lesions``); the screening's ``slices`` names both.

Every operation depends on :func:`~chestlens.serve.security.allow` with the permission it needs, and names
the roles that have it in its description (the OpenAPI document). A submitter sees only what it submitted:
another principal's screening or job answers 404, as an unknown id does, so ids are never confirmed. The
submit route records the screening or job it made in ``request.state.audit_ids`` for the access log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, File, Path, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from chestlens.models.catalog import resolve_bundle
from chestlens.pipeline.batch import csv_text, record
from chestlens.pipeline.schema import ScreeningResult
from chestlens.serve.auth import Permission, Principal
from chestlens.serve.engine import QueueFullError
from chestlens.serve.jobs import save_screening
from chestlens.serve.layers import NOT_DRAWN, SERIES, SOURCE, draw_layer, draw_slice, series_slices
from chestlens.serve.problems import Problem, ProblemError, busy
from chestlens.serve.schemas import (
    API,
    Health,
    JobOut,
    ModelOut,
    ScreeningOut,
    SeriesSlicesOut,
    SliceLayer,
    WorklistItem,
    job_out,
    screening_out,
    series_slices_out,
    worklist_item,
)
from chestlens.serve.security import KeyFirstRoute, allow
from chestlens.serve.service import Service
from chestlens.serve.store import Store, new_id
from chestlens.serve.uploads import check_image_bytes, decode_image, is_zip, unsupported, upload_name

ID = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="32 hex characters")]
LAYER = Annotated[
    str, Path(pattern=r"^[a-z]{1,32}$", description="e.g. image, heatmap, lungs, lesions, summary")
]
SLICE = Annotated[int, Path(description="the slice, 0-based in the volume's order (inferior first)")]
ERRORS = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (400, 404, 413, 415, 422, 503)
}  # 401 and 403 come with the security dependencies when credentials are configured (create_app)
SUBMITTER = Annotated[Principal, allow(Permission.SUBMIT)]
READER = Annotated[Principal, allow(Permission.READ)]
DELETER = Annotated[Principal, allow(Permission.DELETE)]

log = logging.getLogger("chestlens.serve")
health_router = APIRouter()
router = APIRouter(route_class=KeyFirstRoute)  # create_app adds the security schemes when configured


def service_of(request: Request) -> Service:
    return request.app.state.service


@health_router.get("/healthz", response_model=Health, tags=["health"])
async def healthz() -> Health:
    """The process is up (models may still be loading)."""
    return Health(status="ok")


@health_router.get("/readyz", response_model=Health, responses=ERRORS, tags=["health"])
async def readyz(request: Request) -> Health:
    """Ready to screen: models loaded and interrupted jobs recovered; 503 before that."""
    service = service_of(request)
    service.require_ready()
    return Health(status="ready", models=list(service.settings.models))


@router.get(f"{API}/openapi.json", include_in_schema=False, dependencies=[allow(Permission.READ)])
async def openapi(request: Request) -> JSONResponse:
    """The OpenAPI document (served here rather than by FastAPI, so the credentials apply to it too)."""
    return JSONResponse(request.app.openapi())


@router.post(
    f"{API}/screenings",
    response_model=ScreeningOut,
    responses={**ERRORS, 202: {"model": JobOut, "description": "a series: a background job was started"}},
    tags=["screenings"],
)
async def submit(
    request: Request,
    principal: SUBMITTER,
    file: Annotated[
        list[UploadFile], File(description="one image, a zip of a DICOM series, or several DICOM files")
    ],
) -> ScreeningOut | JSONResponse:
    """Screen an upload. The format is sniffed from the bytes (the declared content type is ignored).

    Role: submitter, reader or admin. The screening (or job) is owned by the caller.
    """
    service = service_of(request)
    engine, jobs = service.require_ready()
    parts = [await upload.read() for upload in file]
    if len(parts) == 1 and not is_zip(parts[0]):
        screening_id = new_id()
        try:
            with engine.admit():  # before decoding: a full server decodes nothing
                async with service.decode_slots:
                    image = await asyncio.to_thread(
                        decode_image, parts[0], upload_name(screening_id, file[0].filename), service.settings
                    )
                screening = await engine.screen(image)
        except QueueFullError as error:
            raise busy("the screening queue", service.settings.retry_after_s) from error
        store = service.require_store()
        await asyncio.to_thread(save_screening, store, screening, screening_id, principal.owner)
        request.state.audit_ids = {"screening_id": screening_id}
        return screening_out(await asyncio.to_thread(store.screening, screening_id))  # type: ignore[arg-type]
    if len(parts) > 1:
        for index, data in enumerate(parts):
            if check_image_bytes(data, f"part {index + 1}") != "dicom":
                raise unsupported(f"part {index + 1} of a multi-file series is not DICOM")
    job = await jobs.submit(parts, principal.owner)
    request.state.audit_ids = {"job_id": job.id}
    return JSONResponse(
        job_out(job).model_dump(mode="json"), status_code=202, headers={"Location": f"{API}/jobs/{job.id}"}
    )


@router.get(f"{API}/screenings", response_model=list[WorklistItem], responses=ERRORS, tags=["screenings"])
async def worklist(
    request: Request, principal: READER, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[WorklistItem]:
    """This server's recent results, newest first.

    Role: submitter (its own results only), reader or admin (all).
    """
    service = service_of(request)
    limit = min(limit, service.settings.history_limit)
    rows = await asyncio.to_thread(service.require_store().recent, limit, principal.scope)
    return [worklist_item(row) for row in rows]


@router.get(
    f"{API}/screenings.csv",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"text/csv": {}}}},
    tags=["screenings"],
)
async def worklist_csv(
    request: Request, principal: READER, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> Response:
    """The worklist as CSV (the columns of ``chestlens predict``'s results.csv plus the id).

    Role: submitter (its own results only), reader or admin (all).
    """
    service = service_of(request)
    limit = min(limit, service.settings.history_limit)
    rows = await asyncio.to_thread(service.require_store().recent, limit, principal.scope)
    lines = [record(row.id, ScreeningResult.model_validate_json(row.result_json)) for row in rows]
    return Response(
        csv_text(lines),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="chestlens-worklist.csv"'},
    )


@router.get(
    f"{API}/screenings/{{screening_id}}", response_model=ScreeningOut, responses=ERRORS, tags=["screenings"]
)
async def get_screening(request: Request, principal: READER, screening_id: ID) -> ScreeningOut:
    """A stored result (the pipeline's JSON schema) and its overlay URLs; a CT series also names its
    slices (``slices``: count, layers, the URL of their JSON and the URL template of their PNGs).

    Role: submitter (its own; another's answers 404), reader or admin.
    """
    store = service_of(request).require_store()
    stored = await asyncio.to_thread(store.screening, screening_id, principal.scope)
    if stored is None:
        raise ProblemError(404, "not-found", "Not found", f"no screening {screening_id}")
    return screening_out(stored)


@router.delete(f"{API}/screenings/{{screening_id}}", status_code=204, responses=ERRORS, tags=["screenings"])
async def delete_screening(request: Request, principal: DELETER, screening_id: ID) -> Response:
    """Delete a result and everything derived from it (overlays, its job); 404 when there is none.

    Role: submitter (its own; another's answers 404) or admin (any). A reader gets 403.
    """
    store = service_of(request).require_store()
    deleted = await asyncio.to_thread(store.delete_screening, screening_id, principal.scope)
    if not deleted:
        raise ProblemError(404, "not-found", "Not found", f"no screening {screening_id}")
    log.info("screening deleted", extra={"event": "deleted", "screening_id": screening_id})
    return Response(status_code=204)


@router.get(
    f"{API}/screenings/{{screening_id}}/overlays/{{layer}}",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/png": {}}}},
    tags=["screenings"],
)
async def get_overlay(request: Request, principal: READER, screening_id: ID, layer: LAYER) -> Response:
    """One PNG layer of a screening (drawn on its first request, then kept).

    Role: submitter (of its own screenings; another's answers 404), reader or admin.
    """
    store = service_of(request).require_store()
    visible = await asyncio.to_thread(store.visible, screening_id, principal.scope)
    png = await asyncio.to_thread(store.overlay, screening_id, layer) if visible else None
    if png is None:
        raise ProblemError(404, "not-found", "Not found", f"no layer {layer!r} for screening {screening_id}")
    if png == NOT_DRAWN:
        png = await asyncio.to_thread(_draw, store, screening_id, layer)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _draw(store: Store, screening_id: str, layer: str) -> bytes:
    """Draw a layer from the stored arrays and keep it (blocking)."""
    stored = store.screening(screening_id)
    source = store.overlay(screening_id, SOURCE)
    if stored is None or source is None:
        raise ProblemError(404, "not-found", "Not found", f"no layer {layer!r} for screening {screening_id}")
    png = draw_layer(layer, source, ScreeningResult.model_validate_json(stored.result_json))
    store.set_overlay(screening_id, layer, png)
    return png


@router.get(
    f"{API}/screenings/{{screening_id}}/slices",
    response_model=SeriesSlicesOut,
    responses=ERRORS,
    tags=["screenings"],
)
async def get_slices(request: Request, principal: READER, screening_id: ID) -> SeriesSlicesOut:
    """The slices of a CT series result: per slice its position (mm), lung area and lesion area per class
    (mm², on the masks' own grids, None without a pixel spacing), the result's slice lesion score and the
    layers that show something; the size of the slice PNGs and their URL template. 404 for a 2-D
    screening (and a series stored before the server kept slices).

    Role: submitter (its own; another's answers 404), reader or admin.
    """
    store = service_of(request).require_store()
    stored = await asyncio.to_thread(store.screening, screening_id, principal.scope)
    source = await asyncio.to_thread(store.overlay, screening_id, SERIES) if stored is not None else None
    if stored is None or source is None:
        raise ProblemError(404, "not-found", "Not found", f"no slices for screening {screening_id}")
    return series_slices_out(stored, await asyncio.to_thread(series_slices, source))


@router.get(
    f"{API}/screenings/{{screening_id}}/slices/{{k}}/{{layer}}",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/png": {}}}},
    tags=["screenings"],
)
async def get_slice(
    request: Request, principal: READER, screening_id: ID, k: SLICE, layer: SliceLayer
) -> Response:
    """One layer of one slice of a CT series result as PNG, drawn on request: ``image`` (grey, lung
    window, longer side at most 256 px), ``lungs`` (lung contour) or ``lesions`` (lesion regions in
    their colours), the last two transparent elsewhere and of the image's size, to stack on it. 404 for a
    slice out of range, a layer the series has not (``slices.layers`` of the screening) and a 2-D
    screening.

    Role: submitter (of its own screenings; another's answers 404), reader or admin.
    """
    store = service_of(request).require_store()
    visible = await asyncio.to_thread(store.visible, screening_id, principal.scope)
    source = await asyncio.to_thread(store.overlay, screening_id, SERIES) if visible else None
    png = None if source is None else await asyncio.to_thread(draw_slice, source, k, layer)
    if png is None:
        detail = f"no layer {layer!r} of slice {k} for screening {screening_id}"
        raise ProblemError(404, "not-found", "Not found", detail)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get(f"{API}/jobs/{{job_id}}", response_model=JobOut, responses=ERRORS, tags=["jobs"])
async def get_job(request: Request, principal: READER, job_id: ID) -> JobOut:
    """A background job's status and progress; ``screening_url`` once done.

    Role: submitter (its own jobs; another's answers 404), reader or admin.
    """
    job = await asyncio.to_thread(service_of(request).require_store().job, job_id, principal.scope)
    if job is None:
        raise ProblemError(404, "not-found", "Not found", f"no job {job_id}")
    return job_out(job)


@router.get(
    f"{API}/models",
    response_model=list[ModelOut],
    responses=ERRORS,
    tags=["models"],
    dependencies=[allow(Permission.READ)],
)
async def models(request: Request) -> list[ModelOut]:
    """The loaded models with their model cards.

    Role: submitter, reader or admin.
    """
    engine, _ = service_of(request).require_ready()
    return [_model_out(model.spec, model.path) for model in engine.screener.models]


def _model_out(spec, path) -> ModelOut:
    folder = path if path is not None else resolve_bundle(spec.name)
    card = folder / "MODEL_CARD.md"
    return ModelOut(
        name=spec.name,
        version=spec.version,
        kind=spec.kind,
        task=spec.task,
        architecture=spec.architecture,
        labels=spec.labels,
        temperature=spec.temperature,
        operating_points=spec.operating_points,
        weights_sha256=spec.weights_sha256,
        model_card=card.read_text(encoding="utf-8") if card.is_file() else None,
    )
