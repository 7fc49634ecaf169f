"""The listener's screening worker: radiographs at once, CT series once complete or quiet a while.

One thread owns the :class:`~chestlens.pipeline.screener.Screener` (models are not shared between
threads). Each screened image or series gets its DICOM SR, its SEG (when there are masks) and, with
``secondary_capture``, its overlay as a Secondary Capture image, written by
:func:`chestlens.pipeline.dicom_out.write_dicom_outputs` into ``<state_dir>/results/<key>/<run>/``; every
written file is queued in the outbox for every destination. A CT series of several slices is screened as
a volume from its folder: its SR references the series' first slice in the reader's order (the most
inferior), its SEG is one multi-frame SEG over every slice and its SC shows one representative slice.

Received files wait in ``<state_dir>/incoming/<series key>/`` and are removed once screened (or refused
by the quality gate), so the folder holds exactly the unscreened inputs: :meth:`ScreeningWorker.recover`
queues them again at the next start.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom

from chestlens.dicomnet.audit import AuditLog, log
from chestlens.dicomnet.outbox import Outbox
from chestlens.dicomnet.returns import queue_results, write_results
from chestlens.dicomnet.settings import ListenSettings
from chestlens.errors import ChestlensInputError
from chestlens.pipeline.screener import Screener

INCOMING_DIR = "incoming"
TICK_S = 0.2


def is_ct_slice(dataset: pydicom.Dataset) -> bool:
    """A single-frame CT image: grouped by series before screening."""
    return str(dataset.get("Modality", "")).upper() == "CT" and int(dataset.get("NumberOfFrames") or 1) == 1


def expected_slices(dataset: pydicom.Dataset) -> int | None:
    """The number of slices a CT series will have, when its slices say (Images in Acquisition,
    (0020,1002)); None when they do not (many scanners leave it out: the settle time applies)."""
    with contextlib.suppress(TypeError, ValueError):
        count = int(dataset.get("ImagesInAcquisition") or 0)
        return count if count > 1 else None
    return None


def _discard(files: list[Path]) -> None:
    """Remove screened input files (and their folder once empty): no image is kept longer than needed."""
    for path in files:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: more slices of the series arrived meanwhile
        files[0].parent.rmdir()


@dataclass(slots=True)
class _Series:
    """Slices of one CT series received so far."""

    files: list[Path]
    last_arrival: float


class ScreeningWorker:
    """Queue of received images and series, screened one at a time in a background thread.

    Args:
        settings: the listener's settings (settle time, destinations).
        screener: loaded models.
        outbox: where results are queued.
        audit: audit log.
        on_queued: called after results were added to the outbox (wakes the delivery thread).
    """

    def __init__(
        self,
        settings: ListenSettings,
        screener: Screener,
        outbox: Outbox,
        audit: AuditLog,
        on_queued: Callable[[], None],
    ) -> None:
        self.settings, self.screener, self.outbox, self.audit = settings, screener, outbox, audit
        self.on_queued = on_queued
        self._jobs: queue.Queue[tuple[str, list[Path]]] = queue.Queue()
        self._series: dict[str, _Series] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chestlens-screening", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def add_image(self, key: str, path: Path) -> None:
        """Screen the image at ``path`` as soon as the worker is free."""
        self._jobs.put((key, [path]))

    def add_slice(self, series_key: str, path: Path, expected: int | None = None) -> None:
        """Add a CT slice to its series. The series is screened after ``settle_s`` without new slices, or
        at once when it is complete by count: ``expected`` slices (the slices' Images in Acquisition,
        when the modality writes it) have arrived. An instance received again counts once."""
        with self._lock:
            series = self._series.setdefault(series_key, _Series([], 0.0))
            if path not in series.files:
                series.files.append(path)
            series.last_arrival = time.monotonic()
            if expected and len(series.files) >= expected:
                self._jobs.put((series_key, self._series.pop(series_key).files))

    def recover(self) -> int:
        """Queue the received files left unscreened by the last stop (or a crash); returns their number.

        ``incoming/<series key>/`` folders hold only files not screened yet: screened ones are removed.
        """
        count = 0
        for folder in sorted(
            path for path in (self.settings.state_dir / INCOMING_DIR).glob("*") if path.is_dir()
        ):
            for path in sorted(folder.glob("*.dcm")):  # temporary files of an interrupted write end in .tmp
                header = pydicom.dcmread(path, stop_before_pixels=True)
                if is_ct_slice(header):
                    self.add_slice(folder.name, path, expected_slices(header))
                else:
                    self.add_image(path.stem, path)
                count += 1
        return count

    def pending(self) -> int:
        """Jobs queued or waiting to settle (0 when the worker has nothing left to do and is idle)."""
        with self._lock:
            waiting = len(self._series)
        return waiting + self._jobs.qsize() + (0 if self._idle.is_set() else 1)

    def _settled(self) -> None:
        """Move every quiet series to the job queue."""
        now = time.monotonic()
        with self._lock:
            ready = [k for k, s in self._series.items() if now - s.last_arrival >= self.settings.settle_s]
            for key in ready:
                self._jobs.put((key, self._series.pop(key).files))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._settled()
            self._idle.set()
            try:
                key, files = self._jobs.get(timeout=TICK_S)
            except queue.Empty:
                continue
            self._idle.clear()
            self.screen(key, files)

    def screen(self, key: str, files: list[Path]) -> list[Path]:
        """Screen one image (one file) or one CT series (its slices' folder); returns the written results.

        Files already screened (an instance received twice before its first screening) are skipped."""
        files = [path for path in files if path.exists()]
        if not files:
            return []
        source = files[0] if len(files) == 1 else files[0].parent
        started = time.perf_counter()
        try:
            screening = self.screener.screen(source)
            written = write_results(self.settings, screening, source, key)
        except ChestlensInputError as error:
            self.audit.record("not_reported", key=key, files=len(files), reason=error.reason)
            _discard(files)
            return []
        except Exception as error:  # a long-running service: one bad study must not stop the worker
            log.exception("screening %s failed", key)
            self.audit.record("screening_error", key=key, files=len(files), error=type(error).__name__)
            return []
        seconds = round(time.perf_counter() - started, 3)
        probabilities = (
            screening.result.classification.probabilities if screening.result.classification else None
        )
        self.audit.record(
            "screened",
            key=key,
            files=len(files),
            seconds=seconds,
            results=len(written),
            probabilities=probabilities,
        )
        queue_results(self.outbox, self.settings.destinations, written)
        self.on_queued()
        _discard(files)
        return written
