"""DICOMweb STOW-RS: ``POST /dicomweb/studies`` (and ``/dicomweb/studies/{study}``) with a
``multipart/related; type="application/dicom"`` body, screened by the same batcher and job runner as
uploads to ``/api/v1/screenings``.

Per part: an image other than a CT slice is screened at once and stored as a screening; the CT slices of
one series (two or more) become one series job; a single CT slice is screened as an image. A part that is
not DICOM, not an image, or (for ``/studies/{study}``) of another study is listed as failed. The answer
is the standard STOW-RS response, ``application/dicom+json`` with the Referenced SOP Sequence (0008,1199)
and the Failed SOP Sequence (0008,1198) with a Failure Reason (0008,1197): 200 when all were accepted,
202 when some failed, 409 when none was accepted. Every screening and job made is linked from the
``Link`` header (``rel="related"``). Nothing from the data sets (UIDs, patient) reaches the log.
Storing needs the ``submitter`` role or above; what is made is owned by the caller, as uploads are.
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field
from typing import Annotated

import pydicom
from fastapi import APIRouter, Path, Request, Response
from pydicom.dataset import Dataset
from pydicom.uid import UID

from chestlens.errors import ChestlensInputError
from chestlens.serve.auth import Permission, Principal
from chestlens.serve.engine import Engine, QueueFullError
from chestlens.serve.jobs import save_screening
from chestlens.serve.problems import ProblemError
from chestlens.serve.schemas import API
from chestlens.serve.security import KeyFirstRoute, allow
from chestlens.serve.service import Service
from chestlens.serve.store import new_id
from chestlens.serve.uploads import decode_image, unsupported

DICOMWEB = "/dicomweb"
DICOM_JSON = "application/dicom+json"
#: Failure Reasons of PS3.18 / PS3.4 used here.
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
STUDY_UID = Annotated[str, Path(pattern=r"^[0-9.]{1,64}$", description="Study Instance UID")]
SUBMITTER = Annotated[Principal, allow(Permission.SUBMIT)]

router = APIRouter(tags=["dicomweb"], route_class=KeyFirstRoute)  # schemes added by create_app


@dataclass(slots=True)
class _Outcome:
    """Referenced and failed instances of one request, and the chestlens resources made."""

    referenced: list[Dataset] = field(default_factory=list)
    failed: list[Dataset] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def refer(self, dataset: Dataset) -> None:
        self.referenced.append(_reference(dataset))

    def fail(self, dataset: Dataset | None, reason: int) -> None:
        item = _reference(dataset) if dataset is not None else Dataset()
        item.FailureReason = reason
        self.failed.append(item)


def _reference(dataset: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = dataset.get("SOPClassUID", "")
    item.ReferencedSOPInstanceUID = dataset.get("SOPInstanceUID", "")
    return item


def multipart_boundary(content_type: str) -> str:
    """The boundary of a ``multipart/related`` content type whose ``type`` is ``application/dicom``."""
    media_type, *parameters = [piece.strip() for piece in content_type.split(";")]
    values = {}
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        values[name.strip().lower()] = value.strip().strip('"')
    if media_type.lower() != "multipart/related" or values.get("type", "").lower() != "application/dicom":
        raise unsupported('STOW-RS takes multipart/related; type="application/dicom"')
    if not values.get("boundary"):
        raise unsupported("multipart/related without a boundary")
    return values["boundary"]


def split_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body (RFC 2046): headers (lower-case names) and content of each."""
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    segments = (b"\r\n" + body).split(delimiter)
    parts = []
    for segment in segments[1:]:
        if segment.startswith(b"--"):  # the close delimiter
            break
        _, _, rest = segment.partition(b"\r\n")  # transport padding after the boundary line
        head, separator, content = rest.partition(b"\r\n\r\n")
        if not separator:  # no header block: the part starts with its content
            head, content = b"", rest
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip():
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
    return parts


def _header(data: bytes) -> Dataset | None:
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception:  # any unreadable part is a failed instance, not an error of the request
        return None


def _is_ct_slice(dataset: Dataset) -> bool:
    return str(dataset.get("Modality", "")).upper() == "CT" and int(dataset.get("NumberOfFrames") or 1) == 1


@router.post(f"{DICOMWEB}/studies", response_class=Response)
async def stow_studies(request: Request, principal: SUBMITTER) -> Response:
    """Store instances (STOW-RS) of any study and screen them.

    Role: submitter, reader or admin.
    """
    return await _stow(request, None, principal.owner)


@router.post(f"{DICOMWEB}/studies/{{study}}", response_class=Response)
async def stow_study(request: Request, principal: SUBMITTER, study: STUDY_UID) -> Response:
    """Store instances (STOW-RS) of one study and screen them; instances of other studies fail.

    Role: submitter, reader or admin.
    """
    return await _stow(request, study, principal.owner)


async def _stow(request: Request, study: str | None, owner: str | None) -> Response:
    service: Service = request.app.state.service
    engine, jobs = service.require_ready()
    boundary = multipart_boundary(request.headers.get("content-type", ""))
    outcome = _Outcome()
    series: dict[str, list[tuple[Dataset, bytes]]] = {}
    for headers, data in split_multipart(await request.body(), boundary):
        part_type = headers.get("content-type", "application/dicom").split(";")[0].strip().lower()
        dataset = _header(data) if part_type == "application/dicom" else None
        if dataset is None:
            outcome.fail(None, CANNOT_UNDERSTAND)
        elif study is not None and dataset.get("StudyInstanceUID") != study:
            outcome.fail(dataset, DOES_NOT_MATCH)
        elif "Image Storage" not in UID(str(dataset.get("SOPClassUID", ""))).name:
            outcome.fail(dataset, SOP_CLASS_NOT_SUPPORTED)
        elif _is_ct_slice(dataset):
            series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append((dataset, data))
        else:
            await _screen_one(service, engine, dataset, data, outcome, owner)
    for slices in series.values():
        if len(slices) == 1:
            await _screen_one(service, engine, *slices[0], outcome, owner)
            continue
        job = await jobs.submit([data for _, data in slices], owner)
        outcome.links.append(f"{API}/jobs/{job.id}")
        for dataset, _ in slices:
            outcome.refer(dataset)
    return _response(outcome)


async def _screen_one(
    service: Service, engine: Engine, dataset: Dataset, data: bytes, outcome: _Outcome, owner: str | None
) -> None:
    """Screen one image through the batcher and store it (owned by ``owner``); a failure marks the
    instance failed."""
    screening_id = new_id()
    try:
        image = await asyncio.to_thread(decode_image, data, f"stow-{screening_id}", service.settings)
        screening = await engine.screen(image)
    except (ChestlensInputError, ProblemError):
        outcome.fail(dataset, CANNOT_UNDERSTAND)
        return
    except QueueFullError:
        outcome.fail(dataset, OUT_OF_RESOURCES)
        return
    await asyncio.to_thread(save_screening, service.require_store(), screening, screening_id, owner)
    await asyncio.to_thread(service.return_results, screening, data, screening_id)
    outcome.refer(dataset)
    outcome.links.append(f"{API}/screenings/{screening_id}")


def _response(outcome: _Outcome) -> Response:
    """The STOW-RS response: 200 all stored, 202 some failed, 409 none stored."""
    answer = Dataset()
    if outcome.referenced:
        answer.ReferencedSOPSequence = outcome.referenced
    if outcome.failed:
        answer.FailedSOPSequence = outcome.failed
    status = 200 if not outcome.failed else 202 if outcome.referenced else 409
    headers = (
        {"Link": ", ".join(f'<{link}>; rel="related"' for link in outcome.links)} if outcome.links else {}
    )
    return Response(
        json.dumps(answer.to_json_dict()), status_code=status, media_type=DICOM_JSON, headers=headers
    )
