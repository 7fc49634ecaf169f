"""CT series as background jobs, and persistence across restarts, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from serve_helpers import serving, upload, wait_job

from chestlens.serve.jobs import LOST_UPLOAD
from chestlens.serve.settings import ServeSettings
from chestlens.serve.store import Store, new_id
from chestlens.serve.uploads import SPOOL, spool_series

pytestmark = pytest.mark.shared_data
SERIES_SLICES = 4  # enough for a volume job; each slice costs about a second on a 2-core CPU


@pytest.fixture(scope="module")
def series_zip(source_dir) -> bytes:
    """The first slices (by file name) of the real COVID-CT-MD P001 series, zipped in sub-folders."""
    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(p for p in folder.iterdir() if p.is_file())[:SERIES_SLICES]:
            archive.writestr(f"P001/{path.name}", path.read_bytes())
        archive.writestr("__MACOSX/._junk", b"junk")
    return buffer.getvalue()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_zipped_series_runs_as_a_job_with_progress(client, series_zip, tmp_path):
    response = upload(client, series_zip, "P001.zip")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and response.headers["location"] == f"/api/v1/jobs/{job['id']}"
    done = wait_job(client, response.headers["location"])
    assert done["status"] == "done" and done["progress"] == 1.0, done
    screening = client.get(done["screening_url"]).json()
    result = screening["result"]
    assert result["input"]["n_slices"] == SERIES_SLICES and result["input"]["source"] == f"series-{job['id']}"
    assert result["lungs"]["volume_ml"] > 0
    assert set(screening["overlays"]) == {"summary", "burden"}
    assert client.get(screening["overlays"]["burden"]).headers["content-type"] == "image/png"


def test_series_spool_is_deleted_after_the_job(tmp_path, series_zip):
    with serving(ServeSettings(data_dir=tmp_path, device="cpu")) as service:
        response = upload(service, series_zip)
        assert wait_job(service, response.headers["location"])["status"] == "done"
        assert not any((tmp_path / SPOOL).iterdir())
        assert (tmp_path / SPOOL).stat().st_mode & 0o077 == 0  # private to the server's user


def test_results_and_jobs_survive_a_restart(tmp_path, database_url, pip_dicom, series_zip):
    settings = ServeSettings(data_dir=tmp_path / "data", database_url=database_url, device="cpu")
    with serving(settings) as first:
        screened = upload(first, pip_dicom("RG1_UNCR.dcm").read_bytes()).json()
    # jobs left behind by a process that died: one with its upload still spooled, one without
    store = Store(settings.url)
    dead = f"{socket.gethostname()}:{dead_pid()}:deadbeef"
    resumable, lost, foreign = new_id(), new_id(), new_id()
    for job_id in (resumable, lost):
        store.add_job(job_id, dead)
    store.update_job(lost, status="running", stage="screening", progress=0.4)
    store.add_job(foreign, "another-host:1:cafe")  # another instance's job on a shared database
    spool_series([series_zip], settings, resumable)
    store.close()
    with serving(settings) as second:
        again = second.get(f"/api/v1/screenings/{screened['id']}").json()
        assert again["result"] == screened["result"]
        assert second.get(f"/api/v1/screenings/{screened['id']}/overlays/heatmap").status_code == 200
        done = wait_job(second, f"/api/v1/jobs/{resumable}")
        assert done["status"] == "done", done
        assert second.get(done["screening_url"]).json()["result"]["input"]["n_slices"] == SERIES_SLICES
        failed = second.get(f"/api/v1/jobs/{lost}").json()
        assert failed["status"] == "failed" and failed["error"] == LOST_UPLOAD
        assert second.get(f"/api/v1/jobs/{foreign}").json()["status"] == "queued"
        listed = [item["id"] for item in second.get("/api/v1/screenings").json()]
        assert screened["id"] in listed and done["screening_id"] in listed


def test_store_keeps_no_patient_identifiers(tmp_path, pip_dicom, caplog):
    import pydicom

    source = pip_dicom("CT_small.dcm")
    ds = pydicom.dcmread(source)
    name, patient_id = str(ds.PatientName), str(ds.PatientID)
    assert name and patient_id
    with caplog.at_level("DEBUG"), serving(ServeSettings(data_dir=tmp_path, device="cpu")) as service:
        body = upload(service, source.read_bytes(), f"{name}.dcm").json()
    assert body["result"]["input"]["patient_key"] and body["result"]["input"]["patient_key"] != patient_id
    for path in Path(tmp_path).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert name.encode() not in data and patient_id.encode() not in data, path
    assert name not in caplog.text and patient_id not in caplog.text


def test_the_request_log_names_routes_not_the_uids_in_urls(tmp_path, pip_dicom, caplog):
    """A STOW-RS URL carries the Study Instance UID: the log line gives the route template instead (and a
    URL that matches no route has its UID-like segments replaced)."""
    import pydicom

    study = str(pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"), stop_before_pixels=True).StudyInstanceUID)
    with (
        caplog.at_level("INFO", logger="chestlens.serve"),
        serving(ServeSettings(data_dir=tmp_path, device="cpu")) as service,
    ):
        service.post(f"/dicomweb/studies/{study}", content=b"x", headers={"Content-Type": "text/plain"})
        service.get(f"/no/such/{study}/path")
    paths = [record.__dict__.get("path") for record in caplog.records if record.getMessage() == "request"]
    assert "/dicomweb/studies/{study}" in paths and "/no/such/{uid}/path" in paths
    assert study not in caplog.text
