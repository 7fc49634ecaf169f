"""``chestlens serve --return-to``: DICOM received by STOW-RS is screened and its SR and SEG go back to a
DICOM node (here a pynetdicom storage SCP) through the listener's durable outbox."""

from __future__ import annotations

import httpx
import pydicom
import pytest
from dicomnet_helpers import Receiver, sr_probabilities, wait_for
from dicomweb_client import DICOMwebClient
from pydicom.uid import generate_uid

from chestlens.dicomnet.outbox import Outbox
from chestlens.errors import ChestlensInputError
from chestlens.serve.settings import ServeSettings

RESULT_TIMEOUT_S = 180


@pytest.fixture
def receiver():
    peer = Receiver()
    yield peer
    peer.stop()


def test_return_destinations_are_checked_when_the_settings_load(tmp_path, monkeypatch):
    with pytest.raises(ChestlensInputError, match="return_to"):
        ServeSettings.load(data_dir=tmp_path, return_to=("PACS@nowhere",))
    with pytest.raises(ChestlensInputError, match="return_ae_title"):
        ServeSettings.load(data_dir=tmp_path, return_ae_title="A TITLE FAR TOO LONG")
    monkeypatch.setenv("CHESTLENS_SERVE_RETURN_TO", "PACS@127.0.0.1:104,http://pacs/dicom-web")
    settings = ServeSettings.load(data_dir=tmp_path)
    assert settings.return_to == ("PACS@127.0.0.1:104", "http://pacs/dicom-web")


@pytest.mark.slow
def test_stow_rs_images_and_series_get_their_sr_and_seg_returned(live_service, receiver, pip_dicom, tmp_path):
    base = live_service(return_to=(f"PACS@127.0.0.1:{receiver.port}",), data_dir=tmp_path / "serve")
    radiograph = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))
    series_uid, slices = generate_uid(), []
    for number in range(3):
        ds = pydicom.dcmread(pip_dicom("CT_small.dcm"))
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = series_uid, generate_uid(), number + 1
        ds.ImagePositionPatient = [*list(ds.ImagePositionPatient)[:2], float(number * 5)]
        slices.append(ds)

    DICOMwebClient(f"{base}/dicomweb").store_instances([radiograph, *slices])

    wait_for(lambda: len(receiver.received) == 4, RESULT_TIMEOUT_S, "two SRs and two SEGs")
    assert sorted(receiver.modalities()) == ["SEG", "SEG", "SR", "SR"]
    by_study = {str(ds.SeriesInstanceUID): ds for ds in receiver.by_modality("SR")}
    assert {str(ds.StudyInstanceUID) for ds in receiver.received} == {
        str(radiograph.StudyInstanceUID),
        str(slices[0].StudyInstanceUID),
    }
    (rg1_sr,) = [ds for ds in by_study.values() if ds.StudyInstanceUID == radiograph.StudyInstanceUID]
    (stored,) = [
        item
        for item in httpx.get(f"{base}/api/v1/screenings").json()
        if item["image_type"] == "chest_radiograph"
    ]
    result = httpx.get(f"{base}/api/v1/screenings/{stored['id']}").json()
    assert sr_probabilities(rg1_sr) == pytest.approx(
        result["result"]["classification"]["probabilities"], abs=1e-6
    )
    (series_seg,) = [
        ds for ds in receiver.by_modality("SEG") if ds.StudyInstanceUID == slices[0].StudyInstanceUID
    ]
    referenced = {
        ref.ReferencedSOPInstanceUID
        for ref in series_seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced == {str(ds.SOPInstanceUID) for ds in slices}
    outbox = Outbox(tmp_path / "serve" / "dicom-return")
    wait_for(lambda: {i.status for i in outbox.items()} == {"delivered"}, 10, "delivered marks")
    assert len(outbox.items()) == 4
