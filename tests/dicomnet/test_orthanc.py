"""End to end with a real PACS: Orthanc (started by .ci/orthanc.sh) sends RG1_UNCR.dcm to
``chestlens listen``, which returns the SR and SEG into the same study in Orthanc, by C-STORE or by
STOW-RS to Orthanc's DICOMweb plugin; and Orthanc pushes RG1 by STOW-RS to ``chestlens serve``.

Needs ``CHESTLENS_ORTHANC_URL`` (REST), ``CHESTLENS_ORTHANC_DICOM`` (``AE@HOST:PORT``) and
``CHESTLENS_ORTHANC_LISTEN_PORT`` (the port of Orthanc's ``chestlens`` modality). Without them the test
skips; in CI (``CI=true`` or ``CHESTLENS_REQUIRE_ORTHANC=1``) it fails instead.
"""

from __future__ import annotations

import os

import highdicom as hd
import httpx
import pydicom
import pytest
from dicomnet_helpers import ENV_DICOM, ENV_PORT, ENV_URL, orthanc_instances, sr_probabilities, wait_for

from chestlens.dicomnet.settings import Destination

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("returned_by", ["c-store", "stow-rs"])
def test_orthanc_sends_a_radiograph_and_gets_the_sr_and_seg_in_the_same_study(
    orthanc, start_listener, screener, pip_dicom, tmp_path, returned_by
):
    path = pip_dicom("RG1_UNCR.dcm")
    upload = orthanc.post("/instances", content=path.read_bytes()).json()
    orthanc.delete(f"/studies/{upload['ParentStudy']}").raise_for_status()  # results of earlier runs
    upload = orthanc.post("/instances", content=path.read_bytes()).json()
    study = upload["ParentStudy"]
    destination = os.environ[ENV_DICOM] if returned_by == "c-store" else f"{os.environ[ENV_URL]}/dicom-web"
    start_listener(
        tmp_path,
        (Destination.parse(destination),),
        port=int(os.environ[ENV_PORT]),
        allowed_callers=("ORTHANC",),
    )

    sent = orthanc.post(
        "/modalities/chestlens/store", json={"Resources": [upload["ID"]], "Synchronous": True}
    )
    sent.raise_for_status()
    wait_for(
        lambda: len(orthanc.get(f"/studies/{study}/instances").json()) == 3, 180, "SR and SEG in Orthanc"
    )

    instances = orthanc_instances(orthanc, study)
    assert sorted(instances) == ["CR", "SEG", "SR"] or sorted(instances) == ["DX", "SEG", "SR"]
    source = pydicom.dcmread(path)
    assert sr_probabilities(instances["SR"]) == pytest.approx(
        screener.screen(path).result.classification.probabilities, abs=1e-6
    )
    seg = hd.seg.Segmentation.from_dataset(instances["SEG"])
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.SegmentSequence[0].SegmentLabel == "lungs"
    assert seg.get_source_image_uids()[0][2] == source.SOPInstanceUID


def test_orthanc_pushes_a_radiograph_to_chestlens_serve_by_stow_rs(orthanc, live_service, pip_dicom):
    base = live_service()
    upload = orthanc.post("/instances", content=pip_dicom("RG1_UNCR.dcm").read_bytes()).json()
    orthanc.put("/dicom-web/servers/chestlens", json={"Url": f"{base}/dicomweb/"}).raise_for_status()

    sent = orthanc.post(
        "/dicom-web/servers/chestlens/stow", json={"Resources": [upload["ID"]], "Synchronous": True}
    )

    sent.raise_for_status()
    (item,) = httpx.get(f"{base}/api/v1/screenings").json()
    assert item["image_type"] == "chest_radiograph" and item["status"] == "screened"
