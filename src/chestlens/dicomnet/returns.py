"""Results returned into the patient's study: DICOM outputs written once, queued in the durable outbox for
every destination, delivered by a background thread.

``chestlens listen`` queues what its screening worker writes (:func:`queue_results`). ``chestlens serve``
uses :class:`ResultReturn` for the DICOM it receives by STOW-RS (and its DICOM series jobs) when it is
configured with destinations, so the same outbox, retries, audit log and status apply to both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

import pydicom

from chestlens.atomic import write_bytes_atomic
from chestlens.dicomnet.audit import AuditLog, log
from chestlens.dicomnet.delivery import Deliverer
from chestlens.dicomnet.outbox import Outbox
from chestlens.dicomnet.settings import Destination, ListenSettings
from chestlens.errors import ChestlensInputError
from chestlens.io.deid import salted_key
from chestlens.pipeline.case import Screening
from chestlens.pipeline.dicom_out import write_dicom_outputs

RESULTS_DIR = "results"
RETURN_INCOMING_DIR = "return-incoming"


def queue_results(outbox: Outbox, destinations: Iterable[Destination], paths: Iterable[Path]) -> None:
    """Add each written result file to ``outbox`` once per destination (identifiers salted-hashed)."""
    for path in paths:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        for destination in destinations:
            item = outbox.add(
                path,
                sop_instance_uid=str(header.SOPInstanceUID),
                kind=str(header.Modality),
                destination=str(destination),
                instance_key=salted_key(header.SOPInstanceUID),
                study_key=salted_key(header.StudyInstanceUID),
            )
            log.info("queued %s %s for %s", item.kind, item.id, destination)


def results_folder(state_dir: Path, key: str) -> Path:
    """A new folder per screening under ``state_dir/results/<key>/``: an image screened twice gets new
    results, never files that an outbox item still points to."""
    return state_dir / RESULTS_DIR / key / uuid.uuid4().hex


def write_results(settings: ListenSettings, screening: Screening, source: Path, key: str) -> list[Path]:
    """The SR, SEG (and with ``settings.secondary_capture`` the SC) of ``screening`` of the DICOM file or
    series folder ``source``, in a new folder under ``settings.state_dir/results/<key>/``.

    Raises:
        ChestlensInputError: nothing to report (rejected, not DICOM) or an unusable source.
    """
    folder = results_folder(settings.state_dir, key)
    return write_dicom_outputs(
        screening, source, folder, "result", secondary_capture=settings.secondary_capture
    )


class ResultReturn:
    """Return the DICOM results of screenings done outside the listener (by ``chestlens serve``).

    Args:
        settings: the state folder (outbox, results, audit log), the destinations, the calling AE title
            of C-STORE, the retry timings and ``secondary_capture``; the listening fields are unused.
    """

    def __init__(self, settings: ListenSettings) -> None:
        self.settings = settings
        self.outbox = Outbox(settings.state_dir)
        self.audit = AuditLog(settings.state_dir)
        self.deliverer = Deliverer(settings, self.outbox, self.audit)

    def start(self) -> None:
        self.deliverer.start()

    def stop(self) -> None:
        self.deliverer.stop()

    def submit(self, screening: Screening, source: Path, key: str) -> list[Path]:
        """Write the SR, SEG (and SC) of ``screening`` of the DICOM file or series folder ``source`` and
        queue them; returns the written files ([] when the screening has nothing to report: a rejected
        or non-DICOM input, recorded in the audit log as ``not_reported``)."""
        try:
            written = write_results(self.settings, screening, source, key)
        except ChestlensInputError as error:
            self.audit.record("not_reported", key=key, reason=error.reason)
            return []
        queue_results(self.outbox, self.settings.destinations, written)
        self.audit.record("screened", key=key, results=len(written))
        self.deliverer.wake()
        return written

    def submit_bytes(self, screening: Screening, data: bytes, key: str) -> list[Path]:
        """:meth:`submit` for a DICOM file held in memory (written to the state folder meanwhile)."""
        source = write_bytes_atomic(self.settings.state_dir / RETURN_INCOMING_DIR / f"{key}.dcm", data)
        try:
            return self.submit(screening, source, key)
        finally:
            source.unlink(missing_ok=True)
