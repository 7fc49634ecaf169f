"""A PACS that goes down: results pending for Orthanc while it is stopped are delivered once it is back,
exactly once, across a restart of ``chestlens listen`` too.

The test runs its own Orthanc (the Debian ``Orthanc`` binary, as ``.ci/orthanc.sh`` configures it), so it
can stop and restart it without disturbing the shared one. Without the binary it skips; in CI
(``CI=true`` or ``CHESTLENS_REQUIRE_ORTHANC=1``) it fails instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomnet_helpers import free_port, orthanc_instances, orthanc_unavailable, send, wait_for

from chestlens.dicomnet.outbox import Outbox
from chestlens.dicomnet.settings import Destination

pytestmark = pytest.mark.slow
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
START_TIMEOUT_S = 30.0


class OrthancProcess:
    """A private Orthanc on loopback: its own storage, HTTP and DICOM ports, chestlens (AE CHESTLENS on
    127.0.0.1) as the only modality allowed to store. ``stop()`` and ``start()`` keep the storage."""

    def __init__(self, folder: Path) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log = folder / "orthanc.log"
        self.config = folder / "orthanc.json"
        storage = folder / "storage"
        storage.mkdir(parents=True)
        settings = {
            "Name": "chestlens-restart-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": {"chestlens": ["CHESTLENS", "127.0.0.1", free_port()]},
            "SaveJobs": False,
        }
        self.config.write_text(json.dumps(settings, indent=2))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                ["Orthanc", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self.answers, START_TIMEOUT_S, "the private Orthanc to answer")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/system", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, headers={"Connection": "close"})


@pytest.fixture
def private_orthanc(tmp_path: Path) -> Iterator[OrthancProcess]:
    if shutil.which("Orthanc") is None:
        orthanc_unavailable("no Orthanc binary (Debian package orthanc)")
    orthanc = OrthancProcess(tmp_path / "orthanc")
    orthanc.start()
    yield orthanc
    orthanc.stop()


def test_results_for_a_stopped_orthanc_arrive_once_after_it_and_the_listener_restart(
    private_orthanc, start_listener, screener, pip_dicom, tmp_path
):
    path = pip_dicom("RG1_UNCR.dcm")
    with private_orthanc.client() as orthanc:
        study = orthanc.post("/instances", content=path.read_bytes()).json()["ParentStudy"]
    private_orthanc.stop()
    destination = Destination("ORTHANC", "127.0.0.1", private_orthanc.dicom_port)
    state = tmp_path / "state"
    listener = start_listener(state, (destination,), retry_base_s=0.2, retry_max_s=0.5)

    assert send(listener.port, pydicom.dcmread(path)) == 0x0000
    wait_for(
        lambda: len(items := Outbox(state).items()) == 2 and all(i.attempts >= 2 for i in items),
        120,
        "two failed delivery attempts per result while Orthanc is down",
    )
    assert {item.status for item in Outbox(state).items()} == {"pending"}
    listener.stop()  # chestlens restarts too, with the results still pending

    private_orthanc.start()
    start_listener(state, (destination,), retry_base_s=0.2, retry_max_s=0.5)

    wait_for(lambda: {i.status for i in Outbox(state).items()} == {"delivered"}, 120, "both delivered")
    with private_orthanc.client() as orthanc:
        instances = orthanc.get(f"/studies/{study}/instances").json()
        assert len(instances) == 3  # RG1, one SR and one SEG: nothing lost, nothing twice
        found = orthanc_instances(orthanc, study)
    assert sorted(found) in (["CR", "SEG", "SR"], ["DX", "SEG", "SR"])
    assert found["SR"].StudyInstanceUID == pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
