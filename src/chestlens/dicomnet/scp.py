"""``chestlens listen``: a C-STORE SCP (pynetdicom) that screens what it receives.

* C-ECHO answers success (connectivity checks).
* Associations from calling AE titles outside ``allowed_callers`` are rejected (when the list is set).
* C-STORE of an image (a SOP class named "... Image Storage"): the data set is decoded and checked
  (UIDs, image attributes, pixel data that decodes); a failure answers a DICOM failure status (0xC210
  undecodable data set, 0xA900 attributes missing for an image, 0xC000 pixel data that cannot be
  decoded, 0xA700 file not written) and the listener keeps serving. A good image is stored in
  ``<state_dir>/incoming/<series key>/<instance key>.dcm`` and answered success; radiographs are
  screened at once, CT slices when their series has been quiet for ``settle_s``. Files not screened
  when the listener stopped are screened at its next start.
* C-STORE of any other SOP class (an SR, a SEG, a presentation state...) is accepted, logged and ignored,
  so a PACS forwarding a whole study (including chestlens' own results) sees no errors.

File and folder names, logs and the audit log use salted keys (:mod:`chestlens.io.deid`) with the
listener's installation salt (:func:`chestlens.io.salt.choose_salt` on the state folder).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from chestlens.atomic import write_bytes_atomic
from chestlens.dicomnet.audit import AuditLog, dataset_keys, log
from chestlens.dicomnet.delivery import Deliverer
from chestlens.dicomnet.outbox import Outbox
from chestlens.dicomnet.screening import INCOMING_DIR, ScreeningWorker, expected_slices, is_ct_slice
from chestlens.dicomnet.settings import ListenSettings
from chestlens.io.deid import use_installation_salt
from chestlens.io.dicom import is_image_sop_class
from chestlens.io.redact import withhold_dicom_values
from chestlens.io.salt import choose_salt
from chestlens.pipeline.screener import Screener

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
UNDECODABLE = 0xC210
_REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Rows", "Columns", "PixelData")


def image_problem(dataset: Dataset) -> tuple[int, str] | None:
    """``(failure status, reason)`` when ``dataset`` is not a usable image, else None."""
    missing = [
        keyword for keyword in _REQUIRED if keyword not in dataset or dataset[keyword].value in (None, "")
    ]
    if missing:
        return DOES_NOT_MATCH_SOP_CLASS, f"image without {', '.join(missing)}"
    try:
        dataset.pixel_array  # noqa: B018  (decoding is the check)
    except Exception as error:  # pydicom and its decoders raise many types for bad pixel data
        return CANNOT_UNDERSTAND, f"pixel data cannot be decoded ({type(error).__name__})"
    return None


class Listener:
    """The SCP, its screening worker and its delivery thread, around one state folder.

    Args:
        settings: see :class:`~chestlens.dicomnet.settings.ListenSettings`.
        screener: the loaded models (owned by the screening thread from :meth:`start` on).
    """

    def __init__(self, settings: ListenSettings, screener: Screener) -> None:
        self.settings = settings
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        salt = choose_salt(settings.state_dir)
        use_installation_salt(salt.salt)
        log.info("identifier keys: %s", salt.origin)
        self.audit = AuditLog(settings.state_dir)
        self.outbox = Outbox(settings.state_dir)
        self.deliverer = Deliverer(settings, self.outbox, self.audit)
        self.worker = ScreeningWorker(settings, screener, self.outbox, self.audit, self.deliverer.wake)
        self.ae = AE(ae_title=settings.ae_title)
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)
        self.ae.require_calling_aet = list(settings.allowed_callers)
        self.ae.maximum_associations = settings.max_associations
        self._server: object | None = None
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        """The port listened on (the real one when the settings asked for port 0)."""
        if self._server is None:
            return self.settings.port
        return int(self._server.server_address[1])  # type: ignore[attr-defined]

    def start(self) -> None:
        """Start delivery, screening and the SCP (non-blocking)."""
        withhold_dicom_values()
        self.deliverer.start()
        recovered = self.worker.recover()
        if recovered:
            self.audit.record("recovered", files=recovered)
        self.worker.start()
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        self._server = self.ae.start_server(
            (self.settings.host, self.settings.port), block=False, evt_handlers=handlers
        )
        self.audit.record(
            "listening", ae_title=self.settings.ae_title, host=self.settings.host, port=self.port
        )

    def stop(self) -> None:
        """Stop accepting associations, then the worker and the delivery thread (pending items stay).
        Stopping twice is harmless."""
        if self._stopped.is_set():
            return
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
        self.worker.stop()
        self.deliverer.stop()
        self.audit.record("stopped", ae_title=self.settings.ae_title)
        self._stopped.set()

    def wait(self) -> None:
        """Block until :meth:`stop` is called from another thread (signals still interrupt the wait)."""
        while not self._stopped.wait(1.0):
            pass

    def _on_echo(self, event: evt.Event) -> int:
        self.audit.record("echo", calling_ae=event.assoc.requestor.ae_title)
        return SUCCESS

    def _on_rejected(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        reason = self._rejection_reason(requestor.ae_title)
        if reason.startswith("too many"):
            log.warning("association from %s rejected: %s", requestor.ae_title, reason)
        self.audit.record(
            "association_rejected", calling_ae=requestor.ae_title, address=requestor.address, reason=reason
        )

    def _rejection_reason(self, calling: str) -> str:
        """Why pynetdicom rejected an association (its event does not say): of the two checks it makes
        here, the calling AE title first, then the number of associations."""
        if self.settings.allowed_callers and calling not in self.settings.allowed_callers:
            return "calling AE title not allowed"
        return f"too many associations at once (limit {self.settings.max_associations})"

    def _on_store(self, event: evt.Event) -> int:
        calling = event.assoc.requestor.ae_title
        sop_class = str(event.request.AffectedSOPClassUID)
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
        except Exception as error:  # any decoding failure of the received bytes
            self.audit.record("refused", calling_ae=calling, status=UNDECODABLE, reason=type(error).__name__)
            return UNDECODABLE
        keys = dataset_keys(dataset)
        if not is_image_sop_class(sop_class):
            self.audit.record("ignored", calling_ae=calling, sop_class=UID(sop_class).name, **keys)
            return SUCCESS
        problem = image_problem(dataset)
        if problem is not None:
            status, reason = problem
            self.audit.record("refused", calling_ae=calling, status=status, reason=reason, **keys)
            return status
        try:
            path = self._save(dataset, keys)
        except OSError as error:
            self.audit.record("refused", calling_ae=calling, status=OUT_OF_RESOURCES, reason=str(error))
            return OUT_OF_RESOURCES
        series_key = keys["series_key"] or "series"
        instance_key = keys["instance_key"] or path.stem
        if is_ct_slice(dataset):
            self.worker.add_slice(series_key, path, expected_slices(dataset))
        else:
            self.worker.add_image(instance_key, path)
        self.audit.record("received", calling_ae=calling, sop_class=UID(sop_class).name, **keys)
        return SUCCESS

    def _save(self, dataset: Dataset, keys: dict[str, str | None]) -> Path:
        """Write the received data set as a DICOM file named by its salted keys."""
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        folder = self.settings.state_dir / INCOMING_DIR / (keys["series_key"] or "series")
        return write_bytes_atomic(folder / f"{keys['instance_key']}.dcm", buffer.getvalue())
