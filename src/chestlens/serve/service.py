"""The running service: settings, store, models (loaded in the background), batcher and job runner.

Start-up, in order: the private data folder; the salt for patient keys (:mod:`chestlens.io.salt`,
logged by origin, never by value); the store; orphan spool folders removed
(:func:`chestlens.serve.uploads.remove_orphan_spools`); with ``retention_days`` set, results older than
that are deleted now and every hour (:data:`RETENTION_CHECK_S`); with ``return_to`` set, the delivery of
DICOM results (:class:`chestlens.dicomnet.returns.ResultReturn`, in ``<data_dir>/dicom-return``; pending
deliveries resume); then the models load in the background.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from chestlens.io.deid import use_installation_salt
from chestlens.io.redact import withhold_dicom_values
from chestlens.io.salt import choose_salt
from chestlens.pipeline.screener import Screener
from chestlens.serve.engine import Engine
from chestlens.serve.jobs import JobRunner
from chestlens.serve.problems import ProblemError, log_failure
from chestlens.serve.settings import ServeSettings
from chestlens.serve.store import Store, utcnow
from chestlens.serve.uploads import remove_orphan_spools

if TYPE_CHECKING:
    from chestlens.dicomnet.returns import ResultReturn
    from chestlens.pipeline.case import Screening

log = logging.getLogger("chestlens.serve")

#: Seconds between two retention checks.
RETENTION_CHECK_S = 3600.0
#: Folder of the DICOM results outbox under ``data_dir``.
RETURN_DIR = "dicom-return"


class Service:
    """Lifecycle: :meth:`start` opens the store and starts loading the models; :attr:`ready` turns True
    once they are loaded and interrupted jobs are recovered; :meth:`stop` ends it all."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.engine: Engine | None = None
        self.jobs: JobRunner | None = None
        self.returns: ResultReturn | None = None
        self.load_error: str | None = None
        self._loading: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        #: Uploads decoded at once (each decode holds a full-resolution image in memory).
        self.decode_slots = asyncio.Semaphore(settings.decode_workers)

    @property
    def ready(self) -> bool:
        return self.jobs is not None

    async def start(self) -> None:
        """Open the data folder (salt, database, spool) and start loading the models."""
        withhold_dicom_values()
        Path(self.settings.data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        choice = await asyncio.to_thread(choose_salt, self.settings.data_dir)
        use_installation_salt(choice.salt)
        log.info(f"patient, study and series keys: {choice.origin}", extra={"event": "salt"})
        self.store = await asyncio.to_thread(Store, self.settings.url)
        await asyncio.to_thread(self._clean_spool, self.store)
        loop = asyncio.get_running_loop()
        if self.settings.retention_days is not None:
            self._retention = loop.create_task(self._keep_retention(self.store, self.settings.retention_days))
        if self.settings.return_to:
            self.returns = await asyncio.to_thread(self._start_returns)
        self._loading = loop.create_task(self._load())

    def _start_returns(self) -> ResultReturn:
        """The outbox and delivery thread for DICOM results (``return_to``)."""
        from chestlens.dicomnet.returns import ResultReturn
        from chestlens.dicomnet.settings import Destination, ListenSettings

        settings = ListenSettings(
            state_dir=Path(self.settings.data_dir) / RETURN_DIR,
            ae_title=self.settings.return_ae_title,
            destinations=tuple(Destination.parse(d) for d in self.settings.return_to),
            secondary_capture=self.settings.return_secondary_capture,
        )
        returns = ResultReturn(settings)
        returns.start()
        return returns

    def return_results(self, screening: Screening, source: Path | bytes, screening_id: str) -> None:
        """Queue the DICOM results of ``screening`` (of a DICOM file's bytes or a series folder) for the
        ``return_to`` destinations; nothing without them. A failure is logged (by type) and never fails
        the screening, which is stored already."""
        if self.returns is None:
            return
        try:
            if isinstance(source, bytes):
                self.returns.submit_bytes(screening, source, screening_id)
            else:
                self.returns.submit(screening, source, screening_id)
        except Exception as error:
            log_failure(
                "returning DICOM results failed", error, screening_id=screening_id, event="return_failed"
            )

    @staticmethod
    async def _keep_retention(store: Store, days: float) -> None:
        """Delete results older than ``days`` now and every :data:`RETENTION_CHECK_S` seconds."""
        while True:
            try:
                removed = await asyncio.to_thread(store.delete_before, utcnow() - timedelta(days=days))
            except Exception:  # a database hiccup must not end retention for good
                log.exception("retention check failed", extra={"event": "retention_failed"})
            else:
                if removed:
                    message = f"deleted {removed} screening(s) older than {days:g} days"
                    log.info(message, extra={"event": "retention"})
            await asyncio.sleep(RETENTION_CHECK_S)

    def _clean_spool(self, store: Store) -> None:
        """Remove spool folders left by a kill during an upload (none that a pending job needs)."""
        pending = {job.id for job in store.active_jobs()}
        removed = remove_orphan_spools(self.settings, pending)
        if removed:
            log.info(f"removed {removed} orphan spool folder(s)", extra={"event": "spool_cleaned"})

    async def _load(self) -> None:
        settings = self.settings
        try:
            screener = await asyncio.to_thread(
                Screener.from_models, list(settings.models), runtime=settings.runtime, device=settings.device
            )
        except Exception as error:
            self.load_error = str(error)
            log.exception("models failed to load", extra={"event": "load_failed"})
            return
        engine = Engine(
            screener,
            max_batch=settings.max_batch,
            batch_wait_ms=settings.batch_wait_ms,
            queue_size=settings.queue_size,
        )
        engine.start()
        self.engine = engine
        jobs = JobRunner(settings, self.store, engine, self.return_results)  # type: ignore[arg-type]
        resumed, failed = await jobs.recover()
        self.jobs = jobs
        log.info(
            f"ready: models {', '.join(settings.models)}; jobs resumed {resumed}, failed {failed}",
            extra={"event": "ready"},
        )

    async def stop(self) -> None:
        for task in (self._loading, self._retention):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.jobs is not None:
            await self.jobs.stop()
        if self.engine is not None:
            await self.engine.stop()
        if self.returns is not None:
            await asyncio.to_thread(self.returns.stop)
        if self.store is not None:
            self.store.close()
        use_installation_salt(None)

    def require_ready(self) -> tuple[Engine, JobRunner]:
        """The batcher and job runner, or a 503 problem while the models load (or failed to)."""
        if self.engine is None or self.jobs is None:
            detail = self.load_error or "the models are still loading"
            raise ProblemError(503, "not-ready", "Not ready", detail, {"Retry-After": "5"})
        return self.engine, self.jobs

    def require_store(self) -> Store:
        if self.store is None:
            raise ProblemError(
                503, "not-ready", "Not ready", "the database is not open yet", {"Retry-After": "1"}
            )
        return self.store
