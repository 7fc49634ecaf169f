"""DICOMweb STOW-RS in ``chestlens serve``, driven by dicomweb-client against a real uvicorn on 127.0.0.1:
the pip-shipped radiograph and CT slice are stored and screened; other SOP classes and other studies fail
per instance with the standard Failure Reasons."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, generate_uid

from chestlens.serve.stow import DOES_NOT_MATCH, SOP_CLASS_NOT_SUPPORTED

pytestmark = pytest.mark.slow
WAIT_S = 180.0


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(live_service) -> str:
    """One running service for this module's tests."""
    return live_service()


def _sr() -> Dataset:
    """A minimal Comprehensive SR, in the DICOM file format STOW-RS parts use (preamble, file meta)."""
    sr = Dataset()
    sr.SOPClassUID, sr.SOPInstanceUID = ComprehensiveSRStorage, generate_uid()
    sr.preamble = b"\0" * 128
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.file_meta.MediaStorageSOPClassUID, sr.file_meta.MediaStorageSOPInstanceUID = (
        sr.SOPClassUID,
        sr.SOPInstanceUID,
    )
    sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.Modality = generate_uid(), generate_uid(), "SR"
    return sr


def test_stow_rs_screens_images_and_fails_other_sop_classes(server, pip_dicom):
    radiograph = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))
    ct = pydicom.dcmread(pip_dicom("CT_small.dcm"))
    sr = _sr()

    answer = DICOMwebClient(f"{server}/dicomweb").store_instances([radiograph, ct, sr])

    referenced = {item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence}
    assert referenced == {radiograph.SOPInstanceUID, ct.SOPInstanceUID}
    (failed,) = answer.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == sr.SOPInstanceUID
    assert failed.FailureReason == SOP_CLASS_NOT_SUPPORTED
    worklist = httpx.get(f"{server}/api/v1/screenings").json()
    assert sorted(item["image_type"] for item in worklist) == ["chest_ct", "chest_radiograph"]
    assert {item["status"] for item in worklist} == {"screened"}


def test_stow_rs_to_another_study_is_refused_per_instance(server, pip_dicom):
    radiograph = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))
    client = DICOMwebClient(f"{server}/dicomweb")

    with pytest.raises(requests.HTTPError) as raised:
        client.store_instances([radiograph], study_instance_uid="1.2.3.4")

    assert raised.value.response.status_code == 409
    answer = Dataset.from_json(raised.value.response.json())
    assert answer.FailedSOPSequence[0].FailureReason == DOES_NOT_MATCH


def test_stow_rs_needs_multipart_related_dicom(server):
    response = httpx.post(f"{server}/dicomweb/studies", content=b"x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and "multipart/related" in response.json()["detail"]


@pytest.mark.shared_data
def test_stow_rs_ct_slices_of_one_series_become_one_series_job(server, source_dir):
    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    slices = sorted(
        (pydicom.dcmread(path) for path in folder.glob("*.dcm")), key=lambda ds: ds.InstanceNumber
    )
    slices = slices[60:80]

    def ct_screenings() -> int:
        worklist = httpx.get(f"{server}/api/v1/screenings").json()
        return sum(item["image_type"] == "chest_ct" for item in worklist)

    before = ct_screenings()
    answer = DICOMwebClient(f"{server}/dicomweb").store_instances(slices)

    assert len(answer.ReferencedSOPSequence) == len(slices) and "FailedSOPSequence" not in answer
    _wait_for(lambda: ct_screenings() == before + 1, "the series job's screening")
    time.sleep(1.0)
    assert ct_screenings() == before + 1  # one screening for the whole series
