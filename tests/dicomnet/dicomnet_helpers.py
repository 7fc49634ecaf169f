"""Test peers made with pynetdicom itself: a sending SCU and a receiving storage SCP on 127.0.0.1."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import highdicom as hd
import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    DEFAULT_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    evt,
)
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification

CLASSIFICATION = "classification "


def free_port() -> int:
    """A loopback port nobody listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


class Receiver:
    """A storage SCP standing in for a PACS: keeps every data set it is sent."""

    def __init__(self, ae_title: str = "PACS", port: int = 0) -> None:
        self.ae_title = ae_title
        self.received: list[Dataset] = []
        self._lock = threading.Lock()
        ae = AE(ae_title=ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self._server = ae.start_server(
            ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        self.port = int(self._server.server_address[1])

    def _store(self, event: evt.Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self._lock:
            self.received.append(dataset)
        return 0x0000

    def modalities(self) -> list[str]:
        with self._lock:
            return sorted(str(ds.Modality) for ds in self.received)

    def by_modality(self, modality: str) -> list[Dataset]:
        with self._lock:
            return [ds for ds in self.received if ds.Modality == modality]

    def stop(self) -> None:
        self._server.shutdown()


def associate(
    port: int, calling: str = "MODALITY", called: str = "CHESTLENS", datasets: Sequence[Dataset] = ()
) -> Association:
    """An association from ``calling`` to the listener, proposing Verification and, for each data set, its
    SOP class in its own transfer syntax and in the uncompressed defaults (two presentation contexts: the
    listener accepts one transfer syntax per context)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    proposed = {(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets}
    for sop_class, syntax in proposed:
        ae.add_requested_context(sop_class, syntax)
        ae.add_requested_context(sop_class, DEFAULT_TRANSFER_SYNTAXES)
    return ae.associate("127.0.0.1", port, ae_title=called)


def send(port: int, dataset: Dataset, calling: str = "MODALITY") -> int:
    """C-STORE one data set to the listener; the response status."""
    assoc = associate(port, calling, datasets=[dataset])
    assert assoc.is_established, "association with the listener failed"
    try:
        status = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    return int(status.Status)


def sr_probabilities(sr: Dataset) -> dict[str, float]:
    """Class label -> probability from a chestlens SR (TID 1500 groups "classification <label>")."""
    report = hd.sr.ComprehensiveSR.from_dataset(sr).content
    found = {}
    for group in report.get_image_measurement_groups():
        if group.tracking_identifier.startswith(CLASSIFICATION):
            (probability,) = group.get_measurements(name=codes.DCM.Probability)
            found[group.tracking_identifier.removeprefix(CLASSIFICATION)] = float(probability.value)
    return found


def state_files(state_dir: Path, folder: str) -> list[Path]:
    return sorted((state_dir / folder).rglob("*.dcm"))


ENV_URL = "CHESTLENS_ORTHANC_URL"
ENV_DICOM = "CHESTLENS_ORTHANC_DICOM"
ENV_PORT = "CHESTLENS_ORTHANC_LISTEN_PORT"


def orthanc_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true" or os.environ.get("CHESTLENS_REQUIRE_ORTHANC") == "1":
        pytest.fail(f"{reason} (CI / CHESTLENS_REQUIRE_ORTHANC=1 make a missing Orthanc a failure)")
    pytest.skip(
        f"{reason}: start one with `source .ci/orthanc.sh` (Debian packages orthanc, orthanc-dicomweb)"
    )


def orthanc_instances(orthanc: httpx.Client, study: str) -> dict[str, pydicom.Dataset]:
    """Modality -> data set of every instance of ``study`` in Orthanc (one per modality expected)."""
    found = {}
    for instance in orthanc.get(f"/studies/{study}/instances").json():
        data = orthanc.get(f"/instances/{instance['ID']}/file").content
        dataset = pydicom.dcmread(io.BytesIO(data))
        found[str(dataset.Modality)] = dataset
    return found


def browser_unavailable(reason: str) -> None:
    """Skip without headless Chromium; fail instead in CI (``CI=true`` or ``CHESTLENS_REQUIRE_BROWSER=1``)."""
    if os.environ.get("CI") == "true" or os.environ.get("CHESTLENS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (CI / CHESTLENS_REQUIRE_BROWSER=1 make a missing browser a failure)")
    pytest.skip(f"{reason}: apt-get install chromium, pip install playwright")
