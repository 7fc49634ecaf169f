"""Delivery of outbox items by C-STORE or STOW-RS, retried with exponential backoff, in one background
thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import requests
from dicomweb_client import DICOMwebClient
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import ComprehensiveSRStorage, SegmentationStorage

from chestlens.dicomnet.audit import AuditLog, log
from chestlens.dicomnet.outbox import Outbox, OutboxItem
from chestlens.dicomnet.settings import Destination, ListenSettings

#: C-STORE statuses that mean stored: success and the warnings (coercion, elements discarded...).
STORED_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
POLL_S = 0.2


def c_store(path: Path, destination: Destination, calling_ae: str, *, timeout_s: float = 30.0) -> str | None:
    """Send one DICOM file by C-STORE; None on success, else the reason it was not stored."""
    dataset = pydicom.dcmread(path)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for sop_class in {dataset.SOPClassUID, ComprehensiveSRStorage, SegmentationStorage}:
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):  # one context each: peers accept one
            ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        if assoc.is_rejected:
            return f"association rejected by {destination}"
        return f"no association with {destination} (unreachable or aborted)"
    try:
        status = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    if not status or "Status" not in status:
        return f"no C-STORE response from {destination}"
    if int(status.Status) not in STORED_STATUSES:
        return f"C-STORE status 0x{int(status.Status):04X} from {destination}"
    return None


def stow_rs(path: Path, url: str, *, timeout_s: float = 30.0) -> str | None:
    """Send one DICOM file by STOW-RS to ``<url>/studies``; None on success, else the reason."""
    client = DICOMwebClient(url, timeout=timeout_s)
    client.set_http_retry_params(retry=False)  # the outbox retries, with its own backoff
    try:
        answer = client.store_instances([pydicom.dcmread(path)])
    except requests.RequestException as error:
        status = getattr(error.response, "status_code", None)
        return f"STOW-RS to {url} failed" + (
            f" with HTTP {status}" if status else f" ({type(error).__name__})"
        )
    if answer.get("FailedSOPSequence"):  # Orthanc answers an empty sequence on success
        reason = answer.FailedSOPSequence[0].get("FailureReason")
        return f"STOW-RS to {url} refused the instance (Failure Reason {reason})"
    return None


def send(path: Path, destination: Destination, calling_ae: str) -> str | None:
    """Deliver one file to ``destination`` by STOW-RS (a URL) or C-STORE; None on success, else why not."""
    if destination.url is not None:
        return stow_rs(path, destination.url)
    return c_store(path, destination, calling_ae)


class Deliverer:
    """Background thread sending every due outbox item to its destination."""

    def __init__(self, settings: ListenSettings, outbox: Outbox, audit: AuditLog) -> None:
        self.settings, self.outbox, self.audit = settings, outbox, audit
        self._destinations = {str(d): d for d in settings.destinations}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chestlens-delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now (new items were added)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for item in self.outbox.due():
                if self._stop.is_set():
                    return
                self.deliver(item)
            self._wake.wait(POLL_S)
            self._wake.clear()

    def deliver(self, item: OutboxItem) -> OutboxItem:
        """One attempt at ``item``; records the outcome in the outbox and the audit log."""
        destination = self._destinations.get(item.destination) or Destination.parse(item.destination)
        try:
            error = send(Path(item.file), destination, self.settings.ae_title)
        except (OSError, ValueError, pydicom.errors.InvalidDicomError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        except Exception as failure:  # the delivery thread must outlive any peer's odd answer
            log.exception("delivery of %s failed unexpectedly", item.id)
            error = f"unexpected {type(failure).__name__}"
        fields = {
            "item": item.id,
            "kind": item.kind,
            "destination": item.destination,
            "instance_key": item.instance_key,
            "study_key": item.study_key,
        }
        if error is None:
            self.audit.record("delivered", attempt=item.attempts + 1, **fields)
            return self.outbox.delivered(item)
        attempts = item.attempts + 1
        retry_in = self.settings.retry_delay(attempts) if attempts < self.settings.max_attempts else None
        self.audit.record("delivery_failed", attempt=attempts, error=error, retry_in_s=retry_in, **fields)
        if retry_in is None:
            log.warning("giving up on %s after %d attempts: %s", item.id, attempts, error)
        return self.outbox.attempt_failed(item, error, retry_in=retry_in)
