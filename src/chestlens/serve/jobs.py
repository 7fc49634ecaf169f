"""Saving screenings, and background jobs for CT series that survive restarts.

A job's upload lives in its spool folder until the job ends (then the folder is deleted). At start-up
:meth:`JobRunner.recover` looks at every queued or running job of a dead process on this host: with its
spool folder still there it is claimed and run again; without it, it is marked failed with the reason.
Jobs are never lost silently. Jobs of live processes, or of other hosts sharing a PostgreSQL database,
are left to their owners.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from chestlens.errors import ChestlensInputError
from chestlens.pipeline.screener import Screening
from chestlens.serve.engine import Engine
from chestlens.serve.layers import stored_layers
from chestlens.serve.problems import log_failure
from chestlens.serve.settings import ServeSettings
from chestlens.serve.store import Store, StoredJob, new_id
from chestlens.serve.uploads import read_spooled_series, spool_folder, spool_series

log = logging.getLogger("chestlens.serve")
LOST_UPLOAD = "interrupted by a server restart and its upload is no longer there; submit it again"


def owner_token() -> str:
    """``host:pid:random``: which process owns a job."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_dead(owner: str, me: str) -> bool:
    """True when ``owner`` is an ended process (or an earlier app in this process) on this host."""
    host, pid, token = [*owner.rsplit(":", 2), "", ""][:3]
    my_host, my_pid, my_token = me.rsplit(":", 2)
    if host != my_host or not pid.isdigit():
        return False
    if pid == my_pid:
        return token != my_token
    return not _pid_alive(int(pid))


def save_screening(
    store: Store, screening: Screening, screening_id: str, principal: str | None = None
) -> None:
    """Store a screening and its layers (see :mod:`chestlens.serve.layers`) under ``screening_id``,
    owned by ``principal`` (a hashed principal id; None: no owner) (blocking: run it in a worker thread)."""
    result = screening.result
    status = "screened" if result.gate.accepted else "rejected"
    store.add_screening(screening_id, status, result.model_dump_json(), stored_layers(screening), principal)


class JobRunner:
    """Runs series jobs one at a time (a CT series is the largest thing the server holds in memory)."""

    def __init__(
        self,
        settings: ServeSettings,
        store: Store,
        engine: Engine,
        return_results: Callable[[Screening, Path, str], None] | None = None,
    ) -> None:
        self.settings, self.store, self.engine = settings, store, engine
        self.return_results = return_results
        self.owner = owner_token()
        self._one_at_a_time = asyncio.Semaphore(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, parts: list[bytes], principal: str | None = None) -> StoredJob:
        """Spool the upload, record the job (owned by ``principal``, a hashed principal id), start it;
        returns the queued job. The screening it makes gets the same owner."""
        job_id = new_id()
        await asyncio.to_thread(spool_series, parts, self.settings, job_id)
        job = await asyncio.to_thread(self.store.add_job, job_id, self.owner, principal)
        self._start(job_id)
        return job

    def _start(self, job_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recover(self) -> tuple[int, int]:
        """Resume or fail the jobs of dead processes (see the module docstring): ``(resumed, failed)``."""
        resumed = failed = 0
        for job in await asyncio.to_thread(self.store.active_jobs):
            if not owner_is_dead(job.owner, self.owner):
                continue
            if not await asyncio.to_thread(self.store.claim_job, job.id, job.owner, self.owner):
                continue
            if spool_folder(self.settings, job.id).is_dir():
                resumed += 1
                log.info("job resumed", extra={"job_id": job.id, "event": "job_resumed"})
                self._start(job.id)
            else:
                failed += 1
                await asyncio.to_thread(
                    self.store.update_job,
                    job.id,
                    status="failed",
                    stage="failed",
                    error=LOST_UPLOAD,
                )
        return resumed, failed

    async def stop(self) -> None:
        """Cancel running jobs; they stay queued/running in the store and resume at the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _progress(self, job_id: str, stage: str, progress: float, status: str = "running") -> None:
        await asyncio.to_thread(self.store.update_job, job_id, status=status, stage=stage, progress=progress)

    async def _run(self, job_id: str) -> None:
        folder = spool_folder(self.settings, job_id)
        async with self._one_at_a_time:
            try:
                await self._progress(job_id, "reading the series", 0.1)
                image = await asyncio.to_thread(
                    read_spooled_series, folder, f"series-{job_id}", self.settings
                )
                await self._progress(job_id, "screening", 0.4)
                screening = await self.engine.run_exclusive(self.engine.screener.screen, image)
                await self._progress(job_id, "drawing overlays", 0.8)
                screening_id = new_id()
                job = await asyncio.to_thread(self.store.job, job_id)
                principal = None if job is None else job.principal
                await asyncio.to_thread(save_screening, self.store, screening, screening_id, principal)
                if self.return_results is not None:  # before the spool (the slices) is removed
                    await asyncio.to_thread(self.return_results, screening, folder, screening_id)
                await asyncio.to_thread(
                    self.store.update_job,
                    job_id,
                    status="done",
                    stage="done",
                    progress=1.0,
                    screening_id=screening_id,
                )
            except asyncio.CancelledError:
                raise  # shutdown: the spool stays, the job resumes at the next start
            except ChestlensInputError as error:
                await self._fail(job_id, error.reason)
            except Exception as error:
                log_failure("job failed", error, job_id=job_id, event="job_failed")
                await self._fail(job_id, "internal error while screening the series (logged)")
        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def _fail(self, job_id: str, reason: str) -> None:
        await asyncio.to_thread(self.store.update_job, job_id, status="failed", stage="failed", error=reason)
