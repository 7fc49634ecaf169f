"""Pull for backlogs: ``chestlens predict dicomweb://HOST/PATH --study UID`` (or ``--query KEY=VALUE``).

Studies are found with QIDO-RS (a study search for ``--query``; the instances of each study), their image
instances are retrieved with WADO-RS (:class:`dicomweb_client.DICOMwebClient`, original transfer syntax)
and written, one file per instance, under ``<folder>/<study key>/<series key>/<instance key>.dcm``: keys
are SHA-256 prefixes of the UIDs, so no identifier is in a file name, and one folder per series, so the
screener reads a CT series whole (:func:`chestlens.pipeline.inputs.expand_inputs`). Every file is written
atomically, and an instance already there is not fetched again: a pull that stops (network, Ctrl-C)
resumes where it stopped. Instances that are not images (SR, SEG, presentation states) and chestlens'
own results (the secondary-capture overlays of an earlier screening, Manufacturer ``chestlens``) are
not kept, so a study is never screened on its own results.

``dicomweb://`` means HTTP and ``dicomwebs://`` HTTPS. A bearer token, when the server needs one, comes
from the environment (:data:`TOKEN_ENV`), never from the command line. A server that cannot be reached,
or answers with an error, is a :class:`~chestlens.errors.ChestlensInputError` naming the URL (with no
token) and the reason; an instance that fails alone is counted and named by its hashed key, and the pull
goes on.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pydicom

from chestlens.atomic import write_bytes_atomic
from chestlens.errors import ChestlensInputError
from chestlens.io.dicom import is_image_sop_class

SCHEMES = {"dicomweb://": "http://", "dicomwebs://": "https://"}
TOKEN_ENV = "CHESTLENS_DICOMWEB_TOKEN"
KEY_CHARS = 16
ORIGINAL_SYNTAX = (("application/dicom", "*"),)
PAGE = 500  # QIDO-RS results asked for at a time (limit/offset paging)
STUDY_UID, SERIES_UID, SOP_UID, SOP_CLASS = "0020000D", "0020000E", "00080018", "00080016"


class DicomwebApi(Protocol):
    """What a pull needs of :class:`dicomweb_client.DICOMwebClient` (a test can stand in for it)."""

    def search_for_studies(self, **options: object) -> list[dict]: ...

    def search_for_instances(self, **options: object) -> list[dict]: ...

    def retrieve_instance(self, *uids: str, **options: object) -> pydicom.Dataset: ...


@dataclass(frozen=True, slots=True)
class DicomwebSource:
    """A DICOMweb service root, as an HTTP(S) URL (``dicomweb://h:8042/dicom-web`` -> ``http://...``)."""

    url: str

    @classmethod
    def parse(cls, text: str) -> DicomwebSource | None:
        """The source ``text`` names, or None when it is not a ``dicomweb(s)://`` address."""
        for scheme, http in SCHEMES.items():
            if text.lower().startswith(scheme):
                rest = text[len(scheme) :].rstrip("/")
                if not rest or rest.startswith("/"):
                    raise ChestlensInputError(None, f"{text}: a DICOMweb address needs a host")
                return cls(http + rest)
        return None

    def client(self) -> DicomwebApi:
        """A DICOMweb client of this service (bearer token from :data:`TOKEN_ENV` if set)."""
        from dicomweb_client import DICOMwebClient

        token = os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        client = DICOMwebClient(self.url, headers=headers, timeout=60)
        # three attempts 1 s and 2 s apart (busy or unreachable server) instead of dicomweb-client's
        # five over 30 s, which kept a mistyped address on screen for half a minute
        client.set_http_retry_params(max_attempts=RETRY_ATTEMPTS, wait_exponential_multiplier=RETRY_WAIT_MS)
        return client


#: Attempts of each DICOMweb request, and the backoff multiplier (ms; waits 1 s, then 2 s).
RETRY_ATTEMPTS = 3
RETRY_WAIT_MS = 500


@dataclass(slots=True)
class PullReport:
    """What a pull did: instances fetched now, found already there, not kept (not images, or chestlens
    results), and failed (hashed instance key -> reason); ``studies``: the studies pulled."""

    studies: int = 0
    fetched: int = 0
    already_there: int = 0
    not_kept: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the terminal."""
        return (
            f"DICOMweb: {self.studies} study(ies); {self.fetched} instance(s) fetched, "
            f"{self.already_there} already here, {self.not_kept} not kept (not images, or chestlens "
            f"results), {len(self.failed)} failed"
        )


def uid_key(uid: str) -> str:
    """A file-name-safe key of a UID: the first :data:`KEY_CHARS` hex digits of its SHA-256."""
    return hashlib.sha256(uid.encode()).hexdigest()[:KEY_CHARS]


def _value(attributes: Mapping[str, dict], tag: str) -> str | None:
    """One string value of a DICOM JSON attribute (``{"0020000D": {"vr": "UI", "Value": [...]}}``)."""
    values = attributes.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


def _guarded(source: DicomwebSource, what: str, call: Callable[[], list[dict]]) -> list[dict]:
    """``call()``, its network and HTTP errors as one-line input errors naming the service URL."""
    import requests

    try:
        return call()
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise ChestlensInputError(None, f"{source.url}: {what} failed (HTTP {status})") from error
    except requests.RequestException as error:
        reason = type(error).__name__
        raise ChestlensInputError(None, f"{source.url}: {what} failed ({reason}: cannot reach it)") from error


def _all_pages(search: Callable[..., list[dict]], **options: object) -> list[dict]:
    """Every result of a QIDO-RS ``search``, :data:`PAGE` at a time. Paging is explicit because servers
    differ: Orthanc ignores ``offset`` without ``limit`` (dicomweb-client's ``get_remaining`` then asks
    for the same page forever); a page equal to the one before also ends the loop."""
    results: list[dict] = []
    previous: list[dict] | None = None
    while True:
        page = search(limit=PAGE, offset=len(results), **options)
        if not page or page == previous:
            return results
        results += page
        previous = page


def find_studies(source: DicomwebSource, api: DicomwebApi, query: Mapping[str, str]) -> list[str]:
    """Study Instance UIDs that a QIDO-RS study search with ``query`` (e.g. ``ModalitiesInStudy=CR``,
    ``StudyDate=20200101-20201231``) matches, every page of the answer."""
    found = _guarded(
        source, "the study search", lambda: _all_pages(api.search_for_studies, search_filters=dict(query))
    )
    return [uid for uid in (_value(study, STUDY_UID) for study in found) if uid]


def pull_studies(
    source: DicomwebSource,
    studies: Sequence[str],
    folder: Path,
    *,
    api: DicomwebApi | None = None,
    progress: Callable[[int], None] | None = None,
) -> PullReport:
    """Retrieve the image instances of ``studies`` into ``folder`` (see the module docstring); instances
    already there are skipped. ``progress(n)`` is called after each instance handled."""
    api = api if api is not None else source.client()
    report = PullReport(studies=len(studies))
    for study in studies:
        listed = _guarded(
            source,
            "the instance search of a study",
            lambda study=study: _all_pages(api.search_for_instances, study_instance_uid=study),
        )
        for instance in listed:
            _pull_instance(source, api, study, instance, folder, report)
            if progress is not None:
                progress(1)
    return report


def _pull_instance(
    source: DicomwebSource,
    api: DicomwebApi,
    study: str,
    attributes: Mapping[str, dict],
    folder: Path,
    report: PullReport,
) -> None:
    """Fetch one instance of ``study`` (from its QIDO attributes) unless it is there or not an image."""
    import requests

    from chestlens.pipeline.dicom_out import MANUFACTURER  # highdicom: imported only when pulling

    series, sop, sop_class = (_value(attributes, tag) for tag in (SERIES_UID, SOP_UID, SOP_CLASS))
    if not series or not sop:
        report.failed[f"study {uid_key(study)}"] = "an instance without series or SOP instance UID"
        return
    if sop_class and not is_image_sop_class(sop_class):
        report.not_kept += 1
        return
    target = folder / uid_key(study) / uid_key(series) / f"{uid_key(sop)}.dcm"
    if target.exists():
        report.already_there += 1
        return
    try:
        dataset = api.retrieve_instance(study, series, sop, media_types=ORIGINAL_SYNTAX)
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        report.failed[target.stem] = f"retrieval failed (HTTP {status})"
        return
    except requests.RequestException as error:
        raise ChestlensInputError(None, f"{source.url}: retrieval failed ({type(error).__name__})") from error
    if dataset.get("Manufacturer") == MANUFACTURER:
        report.not_kept += 1
        return
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target, buffer.getvalue())
    report.fetched += 1


def parse_query(items: Sequence[str]) -> dict[str, str]:
    """``["ModalitiesInStudy=CR", "StudyDate=20200101-20201231"]`` -> QIDO-RS search filters."""
    query = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            example = "e.g. ModalitiesInStudy=CR"
            raise ChestlensInputError(None, f"--query {item!r}: expected KEY=VALUE, {example}")
        query[key.strip()] = value.strip()
    return query


def pull(
    source: DicomwebSource,
    folder: Path,
    *,
    studies: Sequence[str] = (),
    query: Mapping[str, str] | None = None,
    api: DicomwebApi | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[PullReport, list[Path]]:
    """Pull the studies named (``studies``) and those a QIDO-RS ``query`` finds into ``folder``; returns
    the report and the pulled studies' folders (inputs for the screener). One of the two is required:
    a whole archive is never pulled by accident."""
    if not studies and not query:
        raise ChestlensInputError(None, f"{source.url}: say what to pull: --study UID or --query KEY=VALUE")
    api = api if api is not None else source.client()
    found = find_studies(source, api, query) if query else []
    uids = list(dict.fromkeys([*studies, *found]))
    if not uids:
        raise ChestlensInputError(None, f"{source.url}: no study matches the query")
    report = pull_studies(source, uids, folder, api=api, progress=progress)
    return report, [folder / uid_key(uid) for uid in uids if (folder / uid_key(uid)).is_dir()]
