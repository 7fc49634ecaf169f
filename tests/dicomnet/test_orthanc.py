"""End to end with a real PACS: Orthanc (started by .ci/orthanc.sh) sends RG1_UNCR.dcm to
``chestlens listen``, which returns the SR and SEG into the same study in Orthanc, by C-STORE or by
STOW-RS to Orthanc's DICOMweb plugin; Orthanc pushes RG1 by STOW-RS to ``chestlens serve``; and
``chestlens predict dicomweb://...`` pulls a radiograph and a CT series from Orthanc (QIDO-RS, WADO-RS).

Needs ``CHESTLENS_ORTHANC_URL`` (REST), ``CHESTLENS_ORTHANC_DICOM`` (``AE@HOST:PORT``) and
``CHESTLENS_ORTHANC_LISTEN_PORT`` (the port of Orthanc's ``chestlens`` modality). Without them the test
skips; in CI (``CI=true`` or ``CHESTLENS_REQUIRE_ORTHANC=1``) it fails instead.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import httpx
import pydicom
import pytest
from dicomnet_helpers import ENV_DICOM, ENV_PORT, ENV_URL, orthanc_instances, sr_probabilities, wait_for
from pydicom.sr.codedict import codes

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


def test_stow_rs_both_ways_orthanc_to_chestlens_serve_and_the_sr_and_seg_back(
    orthanc, live_service, pip_dicom
):
    """Orthanc pushes RG1 to ``chestlens serve`` by STOW-RS; serve returns the SR and SEG to Orthanc's
    DICOMweb root by STOW-RS (``return_to``), into the same study."""
    path = pip_dicom("RG1_UNCR.dcm")
    study_uid = _store_fresh(orthanc, [pydicom.dcmread(path)])
    (study,) = [found["ID"] for found in orthanc.post("/tools/lookup", content=study_uid).json()]
    base = live_service(return_to=(f"{os.environ[ENV_URL]}/dicom-web",))
    orthanc.put("/dicom-web/servers/chestlens", json={"Url": f"{base}/dicomweb/"}).raise_for_status()

    sent = orthanc.post("/dicom-web/servers/chestlens/stow", json={"Resources": [study], "Synchronous": True})

    sent.raise_for_status()
    (item,) = httpx.get(f"{base}/api/v1/screenings").json()
    assert item["image_type"] == "chest_radiograph" and item["status"] == "screened"
    wait_for(
        lambda: len(orthanc.get(f"/studies/{study}/instances").json()) == 3, 120, "SR and SEG in Orthanc"
    )
    instances = orthanc_instances(orthanc, study)
    assert sorted(instances) in (["CR", "SEG", "SR"], ["DX", "SEG", "SR"])
    stored = httpx.get(f"{base}/api/v1/screenings/{item['id']}").json()["result"]
    assert sr_probabilities(instances["SR"]) == pytest.approx(
        stored["classification"]["probabilities"], abs=1e-6
    )
    seg = hd.seg.Segmentation.from_dataset(instances["SEG"])
    assert seg.get_source_image_uids()[0][2] == pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


def _store_fresh(orthanc: httpx.Client, datasets: list[pydicom.Dataset]) -> str:
    """Store ``datasets`` (one study) in Orthanc after deleting what it holds of that study from earlier
    runs; returns the Study Instance UID."""
    study = str(datasets[0].StudyInstanceUID)
    for found in orthanc.post("/tools/lookup", content=study).json():
        if found["Type"] == "Study":
            orthanc.delete(f"/studies/{found['ID']}").raise_for_status()
    for dataset in datasets:
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        orthanc.post("/instances", content=buffer.getvalue()).raise_for_status()
    return study


@pytest.mark.shared_data
def test_predict_pulls_a_radiograph_and_a_ct_series_from_orthanc_and_resumes(
    orthanc, screener, pip_dicom, source_dir, tmp_path
):
    rg1 = pip_dicom("RG1_UNCR.dcm")
    slices = _p001_slices(source_dir)
    studies = [_store_fresh(orthanc, [pydicom.dcmread(rg1)]), _store_fresh(orthanc, slices)]
    address = os.environ[ENV_URL].replace("http://", "dicomweb://") + "/dicom-web"
    command = [
        sys.executable,
        "-m",
        "chestlens.cli",
        "predict",
        address,
        "-o",
        str(tmp_path / "out"),
        "--json",
    ]
    command += [
        "--study",
        studies[0],
        "--query",
        "ModalitiesInStudy=CT",
        "--query",
        f"StudyInstanceUID={studies[1]}",
    ]

    first = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert first.returncode == 0, first.stderr
    assert "2 study(ies); 21 instance(s) fetched, 0 already here" in first.stderr
    results = {r["gate"]["image_type"]: r for r in json.loads(first.stdout)}
    assert results["chest_radiograph"]["classification"]["probabilities"] == pytest.approx(
        screener.screen(rg1).result.classification.probabilities, abs=1e-6
    )
    subset = tmp_path / "subset"
    subset.mkdir()
    for ds in slices:
        shutil.copyfile(ds.filename, subset / Path(ds.filename).name)
    assert results["chest_ct"]["lungs"]["volume_ml"] == pytest.approx(
        screener.screen(subset).result.lungs.volume_ml, rel=1e-6
    )

    again = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert again.returncode == 0, again.stderr
    assert "0 instance(s) fetched, 21 already here" in again.stderr
    assert "0 input(s) to screen, 2 already done" in again.stderr


def _p001_slices(source_dir) -> list[pydicom.Dataset]:
    """20 contiguous slices of COVID-CT-MD P001 (a real HU series), in Instance Number order."""
    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    return sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda ds: ds.InstanceNumber)[60:80]


@pytest.mark.shared_data
@pytest.mark.parametrize("case", ["CT_small.dcm", "P001 series"])
def test_orthanc_sends_ct_and_gets_the_sr_and_seg_in_the_same_study(
    orthanc, start_listener, screener, pip_dicom, source_dir, tmp_path, case
):
    datasets = [pydicom.dcmread(pip_dicom(case))] if case.endswith(".dcm") else _p001_slices(source_dir)
    study_uid = _store_fresh(orthanc, datasets)
    (study,) = [found["ID"] for found in orthanc.post("/tools/lookup", content=study_uid).json()]
    start_listener(
        tmp_path / "state",
        (Destination.parse(os.environ[ENV_DICOM]),),
        port=int(os.environ[ENV_PORT]),
        allowed_callers=("ORTHANC",),
        settle_s=2.0,
    )

    orthanc.post(
        "/modalities/chestlens/store", json={"Resources": [study], "Synchronous": True}
    ).raise_for_status()
    wait_for(
        lambda: len(orthanc.get(f"/studies/{study}/instances").json()) == len(datasets) + 2,
        300,
        "the SR and SEG in Orthanc",
    )

    modalities = [i["MainDicomTags"].get("Modality") for i in orthanc.get(f"/studies/{study}/series").json()]
    assert sorted(modalities) == ["CT", "SEG", "SR"]
    results = {m: d for m, d in orthanc_instances(orthanc, study).items() if m in ("SR", "SEG")}
    seg = hd.seg.Segmentation.from_dataset(results["SEG"])
    assert {uid for _, _, uid in seg.get_source_image_uids()} == {str(ds.SOPInstanceUID) for ds in datasets}
    if len(datasets) == 1:
        expected, measured = screener.screen(pip_dicom(case)).result.lungs.area_mm2, codes.SCT.Area
    else:
        subset = tmp_path / "subset"
        subset.mkdir()
        for ds in datasets:
            shutil.copyfile(ds.filename, subset / Path(ds.filename).name)
        expected, measured = screener.screen(subset).result.lungs.volume_ml, codes.SCT.Volume
    report = hd.sr.ComprehensiveSR.from_dataset(results["SR"]).content
    (lungs,) = report.get_image_measurement_groups(finding_type=codes.SCT.Lung)
    (value,) = lungs.get_measurements(name=measured)  # the slice's lung area (mm2) or the series' volume (mL)
    assert float(value.value) == pytest.approx(expected, rel=1e-6)


def test_orthanc_not_on_the_allow_list_is_refused_and_its_sr_is_ignored_once_allowed(
    orthanc, start_listener, pip_dicom, tmp_path
):
    """A listener that does not allow ORTHANC refuses it at association (Orthanc's job fails); one that
    does accepts an SR from it and ignores it (success, no screening, nothing queued)."""
    study_uid = _store_fresh(orthanc, [pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))])
    (study,) = [found["ID"] for found in orthanc.post("/tools/lookup", content=study_uid).json()]
    port = int(os.environ[ENV_PORT])
    closed = start_listener(tmp_path / "closed", port=port, allowed_callers=("MODALITY",))

    refused = orthanc.post("/modalities/chestlens/store", json={"Resources": [study], "Synchronous": True})

    assert refused.status_code >= 400
    (rejected,) = [e for e in closed.audit.entries() if e["event"] == "association_rejected"]
    assert (rejected["calling_ae"], rejected["reason"]) == ("ORTHANC", "calling AE title not allowed")
    closed.stop()

    sr = orthanc.post("/instances", content=_report_bytes(study_uid)).json()
    listener = start_listener(tmp_path / "open", port=port, allowed_callers=("ORTHANC",))
    orthanc.post(
        "/modalities/chestlens/store", json={"Resources": [sr["ID"]], "Synchronous": True}
    ).raise_for_status()
    (ignored,) = [e for e in listener.audit.entries() if e["event"] == "ignored"]
    assert ignored["sop_class"] == "Comprehensive SR Storage"
    assert not [e for e in listener.audit.entries() if e["event"] in ("received", "screened")]


def _report_bytes(study_uid: str) -> bytes:
    """A minimal Comprehensive SR in ``study_uid`` (as another system might have stored it), as a file."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, generate_uid

    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID, sr.SOPInstanceUID = ComprehensiveSRStorage, generate_uid()
    sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.Modality = study_uid, generate_uid(), "SR"
    sr.PatientID = "ORTHANC-SR-TEST"
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
