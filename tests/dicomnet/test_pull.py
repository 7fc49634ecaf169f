"""``chestlens predict dicomweb://...``: QIDO-RS + WADO-RS pull into a resumable folder, then screening.

These tests stand a small in-process DICOMweb API (real pip DICOM files, an SR made with highdicom) in for
the server; the Orthanc end-to-end pull is in ``test_orthanc.py``.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, generate_uid

from chestlens.dicomnet.pull import DicomwebSource, parse_query, pull, uid_key
from chestlens.errors import ChestlensInputError

SOURCE = DicomwebSource("http://pacs.invalid:8042/dicom-web")


class FakeDicomweb:
    """The QIDO-RS / WADO-RS calls a pull makes, over data sets in memory. ``fail_after``: retrievals
    that succeed before a connection error; ``missing``: SOP instance UIDs answered with HTTP 404."""

    def __init__(self, datasets: list[pydicom.Dataset]) -> None:
        self.datasets = {str(ds.SOPInstanceUID): ds for ds in datasets}
        self.retrieved: list[str] = []
        self.fail_after: int | None = None
        self.missing: set[str] = set()

    def search_for_studies(self, search_filters: dict, limit: int, offset: int) -> list[dict]:
        modality = search_filters.get("ModalitiesInStudy")
        studies = {
            str(ds.StudyInstanceUID) for ds in self.datasets.values() if modality in (None, ds.Modality)
        }
        return [{"0020000D": {"vr": "UI", "Value": [uid]}} for uid in sorted(studies)][
            offset : offset + limit
        ]

    def search_for_instances(self, study_instance_uid: str, limit: int, offset: int) -> list[dict]:
        def attributes(ds: pydicom.Dataset) -> dict:
            tags = {
                "0020000E": ds.SeriesInstanceUID,
                "00080018": ds.SOPInstanceUID,
                "00080016": ds.SOPClassUID,
            }
            return {tag: {"vr": "UI", "Value": [str(value)]} for tag, value in tags.items()}

        found = [attributes(ds) for ds in self.datasets.values() if ds.StudyInstanceUID == study_instance_uid]
        return found[offset : offset + min(limit, 2)]  # pages of two: the pull must ask for every page

    def retrieve_instance(self, study: str, series: str, sop: str, media_types: tuple) -> pydicom.Dataset:
        if self.fail_after is not None and len(self.retrieved) >= self.fail_after:
            raise requests.ConnectionError("connection refused")
        if sop in self.missing:
            response = requests.Response()
            response.status_code = 404
            raise requests.HTTPError("not found", response=response)
        self.retrieved.append(sop)
        buffer = io.BytesIO()
        self.datasets[sop].save_as(buffer, enforce_file_format=True)
        return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _report_of(source: pydicom.Dataset) -> Dataset:
    """A minimal Comprehensive SR in the study and series of ``source`` (a non-image instance)."""
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID, sr.SOPInstanceUID = ComprehensiveSRStorage, generate_uid()
    sr.StudyInstanceUID, sr.SeriesInstanceUID = source.StudyInstanceUID, generate_uid()
    sr.Modality = "SR"
    return sr


@pytest.fixture
def series_study(pip_dicom) -> list[pydicom.Dataset]:
    """Three CT slices of one series (CT_small with new instance UIDs), an SR and a chestlens overlay in
    their study, and RG1 in its own study."""
    slices = []
    for number in range(3):
        ds = pydicom.dcmread(pip_dicom("CT_small.dcm"))
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = number + 1
        slices.append(ds)
    overlay = pydicom.dcmread(pip_dicom("CT_small.dcm"))  # an image chestlens made: not to be screened
    overlay.SeriesInstanceUID, overlay.SOPInstanceUID, overlay.Manufacturer = (
        generate_uid(),
        generate_uid(),
        "chestlens",
    )
    return [*slices, _report_of(slices[0]), overlay, pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))]


def test_dicomweb_addresses_become_http_urls_and_paths_stay_paths():
    assert DicomwebSource.parse("dicomweb://pacs:8042/dicom-web/") == DicomwebSource(
        "http://pacs:8042/dicom-web"
    )
    assert DicomwebSource.parse("DICOMWEBS://pacs/wado") == DicomwebSource("https://pacs/wado")
    assert DicomwebSource.parse("scans/RG1_UNCR.dcm") is None
    with pytest.raises(ChestlensInputError, match="needs a host"):
        DicomwebSource.parse("dicomweb:///dicom-web")
    assert parse_query(["ModalitiesInStudy=CR", "StudyDate = 20200101-20201231"]) == {
        "ModalitiesInStudy": "CR",
        "StudyDate": "20200101-20201231",
    }
    with pytest.raises(ChestlensInputError, match="expected KEY=VALUE"):
        parse_query(["ModalitiesInStudy"])


def test_a_study_is_pulled_image_by_image_into_one_folder_per_series(series_study, tmp_path):
    api = FakeDicomweb(series_study)
    study = str(series_study[0].StudyInstanceUID)

    report, folders = pull(SOURCE, tmp_path, studies=[study], api=api)

    assert (report.fetched, report.already_there, report.not_kept, report.failed) == (3, 0, 2, {})
    assert folders == [tmp_path / uid_key(study)]
    (series,) = folders[0].iterdir()
    files = sorted(series.iterdir())
    assert len(files) == 3 and series.name == uid_key(str(series_study[0].SeriesInstanceUID))
    pulled = {str(pydicom.dcmread(path).SOPInstanceUID): path for path in files}
    for ds in series_study[:3]:
        assert pulled[str(ds.SOPInstanceUID)].name == f"{uid_key(str(ds.SOPInstanceUID))}.dcm"
        assert pydicom.dcmread(pulled[str(ds.SOPInstanceUID)]).PixelData == ds.PixelData
    assert not any("1.2." in path.name or "1.3." in path.name for path in tmp_path.rglob("*"))  # no UIDs


def test_a_pull_that_stops_resumes_without_fetching_anything_twice(series_study, tmp_path):
    api = FakeDicomweb(series_study)
    study = str(series_study[0].StudyInstanceUID)
    api.fail_after = 2
    with pytest.raises(ChestlensInputError, match=r"pacs\.invalid.*retrieval failed \(ConnectionError\)"):
        pull(SOURCE, tmp_path, studies=[study], api=api)
    assert len(list(tmp_path.rglob("*.dcm"))) == 2 and not list(tmp_path.rglob("*.tmp*"))

    api.fail_after = None
    report, _ = pull(SOURCE, tmp_path, studies=[study], api=api)

    assert (report.fetched, report.already_there) == (1, 2)
    slices = sorted(str(ds.SOPInstanceUID) for ds in series_study[:3])
    assert sorted(uid for uid in api.retrieved if uid in slices) == slices  # each slice fetched once


def test_an_instance_the_server_cannot_give_is_reported_and_the_others_are_pulled(series_study, tmp_path):
    api = FakeDicomweb(series_study)
    api.missing = {str(series_study[1].SOPInstanceUID)}

    report, _ = pull(SOURCE, tmp_path, studies=[str(series_study[0].StudyInstanceUID)], api=api)

    assert report.fetched == 2
    assert report.failed == {uid_key(str(series_study[1].SOPInstanceUID)): "retrieval failed (HTTP 404)"}


def test_a_query_finds_the_studies_and_nothing_is_pulled_without_a_selection(series_study, tmp_path):
    api = FakeDicomweb(series_study)

    report, folders = pull(SOURCE, tmp_path, query={"ModalitiesInStudy": "CR"}, api=api)

    assert folders == [tmp_path / uid_key(str(series_study[-1].StudyInstanceUID))] and report.fetched == 1
    with pytest.raises(ChestlensInputError, match="say what to pull"):
        pull(SOURCE, tmp_path, api=api)
    with pytest.raises(ChestlensInputError, match="no study matches"):
        pull(SOURCE, tmp_path, query={"ModalitiesInStudy": "MR"}, api=api)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["dicomweb://127.0.0.1:{port}/dicom-web"], "say what to pull: --study UID or --query KEY=VALUE"),
        (["dicomweb://127.0.0.1:{port}/dicom-web", "--study", "1.2.3"], "cannot reach it"),
        (["{rg1}", "--study", "1.2.3"], "--study and --query select what to pull from a dicomweb:// input"),
    ],
)
def test_predict_gives_one_line_for_a_pull_it_cannot_do(pip_dicom, arguments, message):
    port, rg1 = _closed_port(), str(pip_dicom("RG1_UNCR.dcm"))
    argv = [a.format(port=port, rg1=rg1) for a in arguments]
    done = subprocess.run(
        [sys.executable, "-m", "chestlens.cli", "predict", *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("chestlens: error:")
    assert message in done.stderr and "Traceback" not in done.stderr
    assert Path(rg1).exists()
