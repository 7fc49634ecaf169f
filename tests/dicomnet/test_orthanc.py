"""End to end with a real PACS: Orthanc (started by .ci/orthanc.sh) sends RG1_UNCR.dcm to
``chestlens listen``, which returns the SR and SEG into the same study in Orthanc, by C-STORE or by
STOW-RS to Orthanc's DICOMweb plugin; and Orthanc pushes RG1 by STOW-RS to ``chestlens serve``.

Needs ``CHESTLENS_ORTHANC_URL`` (REST), ``CHESTLENS_ORTHANC_DICOM`` (``AE@HOST:PORT``) and
``CHESTLENS_ORTHANC_LISTEN_PORT`` (the port of Orthanc's ``chestlens`` modality). Without them the test
skips; in CI (``CI=true`` or ``CHESTLENS_REQUIRE_ORTHANC=1``) it fails instead.
"""

from __future__ import annotations

import io
import os

import highdicom as hd
import httpx
import pydicom
import pytest
from dicomnet_helpers import sr_probabilities, wait_for

from chestlens.dicomnet.settings import Destination

pytestmark = pytest.mark.slow
ENV_URL = "CHESTLENS_ORTHANC_URL"
ENV_DICOM = "CHESTLENS_ORTHANC_DICOM"
ENV_PORT = "CHESTLENS_ORTHANC_LISTEN_PORT"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true" or os.environ.get("CHESTLENS_REQUIRE_ORTHANC") == "1":
        pytest.fail(f"{reason} (CI / CHESTLENS_REQUIRE_ORTHANC=1 make a missing Orthanc a failure)")
    pytest.skip(
        f"{reason}: start one with `source .ci/orthanc.sh` (Debian packages orthanc, orthanc-dicomweb)"
    )


@pytest.fixture
def orthanc() -> httpx.Client:
    """REST client of the test Orthanc."""
    missing = [name for name in (ENV_URL, ENV_DICOM, ENV_PORT) if not os.environ.get(name)]
    if missing:
        _unavailable(f"no Orthanc configured ({', '.join(missing)} unset)")
    # Orthanc closes idle keep-alive connections; a fresh connection per request avoids reusing one
    client = httpx.Client(base_url=os.environ[ENV_URL], timeout=120, headers={"Connection": "close"})
    try:
        client.get("/system").raise_for_status()
    except httpx.HTTPError as error:
        _unavailable(f"Orthanc at {os.environ[ENV_URL]} does not answer ({error})")
    yield client
    client.close()


def _instances(orthanc: httpx.Client, study: str) -> dict[str, pydicom.Dataset]:
    """Modality -> data set of every instance of ``study`` in Orthanc (one per modality expected)."""
    found = {}
    for instance in orthanc.get(f"/studies/{study}/instances").json():
        data = orthanc.get(f"/instances/{instance['ID']}/file").content
        dataset = pydicom.dcmread(io.BytesIO(data))
        found[str(dataset.Modality)] = dataset
    return found


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

    instances = _instances(orthanc, study)
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
