"""Inference off the event loop with dynamic micro-batching and a bounded queue.

An upload is admitted before it is decoded (:meth:`Engine.admit`): at most ``queue_size`` images are
admitted at once (being decoded, waiting or in the running batch), and one more is refused at once
(answered 503 with Retry-After) without decoding it, so an overloaded server spends no memory or time
on uploads it cannot screen. Admitted images wait on an :class:`asyncio.Queue` of the same size. One
collector task takes the first waiting image, then whatever else arrives within ``batch_wait_ms`` (up
to ``max_batch``), and runs the batch through ``Screener.iter_screen`` on the single model thread. While
a batch runs, new requests pile up and form the next batch, so the batch size follows the load.
CT series (:meth:`Engine.run_exclusive`) run on the same model thread, between batches.

Failures are isolated per input: one input's error never fails its neighbours. An input the screener
reports as failed (a :class:`~chestlens.pipeline.schema.FailedInput`) answers with its own
:class:`~chestlens.errors.ChestlensInputError` (422). When a whole batch raises, its inputs are screened
again one at a time; an input that still raises gets a :class:`ChestlensInputError` of its own (422,
the exception is logged by type and stack) and the others their results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from chestlens.errors import ChestlensInputError
from chestlens.io import MedicalImage
from chestlens.pipeline.schema import FailedInput
from chestlens.pipeline.screener import Screener, Screening
from chestlens.serve.problems import log_failure

T = TypeVar("T")
#: What one input of a batch comes back as: its screening, or the error that is its alone.
Outcome = Screening | ChestlensInputError
log = logging.getLogger("chestlens.serve")


class QueueFullError(Exception):
    """The queue is full: the caller should retry later."""


@dataclass(slots=True)
class _Request:
    image: MedicalImage
    future: asyncio.Future[Screening]


class Engine:
    """Micro-batching front of one :class:`Screener` (see the module docstring).

    Args:
        screener: the loaded models.
        max_batch: most images per batch (1: one request at a time, no batching).
        batch_wait_ms: extra wait for more requests after the first one, milliseconds.
        queue_size: most images admitted at once (:meth:`admit`); more answer :class:`QueueFullError`.
    """

    def __init__(self, screener: Screener, *, max_batch: int, batch_wait_ms: float, queue_size: int) -> None:
        self.screener = screener
        self.max_batch = max(1, max_batch)
        self.wait_s = max(0.0, batch_wait_ms) / 1000.0
        self.queue: asyncio.Queue[_Request] = asyncio.Queue(maxsize=max(1, queue_size))
        self.admitted = 0
        self.models = ThreadPoolExecutor(1, thread_name_prefix="chestlens-models")
        self.batches = 0
        self.images = 0
        self._collector: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._collector = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
        while not self.queue.empty():
            self.queue.get_nowait().future.cancel()
        self.models.shutdown(wait=True, cancel_futures=True)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the ``queue_size`` places from before decoding until the result; a full engine
        raises :class:`QueueFullError` at once (nothing is decoded then)."""
        if self.admitted >= self.queue.maxsize:
            raise QueueFullError
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def screen(self, image: MedicalImage) -> Screening:
        """Screen one decoded image in the next batch; a full queue raises :class:`QueueFullError`."""
        future: asyncio.Future[Screening] = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Request(image, future))
        except asyncio.QueueFull as error:
            raise QueueFullError from error
        return await future

    async def run_exclusive(self, function: Callable[..., T], *args: object) -> T:
        """Run ``function(*args)`` on the model thread (models are never used by two threads at once)."""
        return await asyncio.get_running_loop().run_in_executor(self.models, function, *args)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            live = [r for r in batch if not r.future.done()]
            if live:
                await self._run(live)

    async def _run(self, batch: list[_Request]) -> None:
        try:
            outcomes = await self.run_exclusive(self._screen_batch, [r.image for r in batch])
        except Exception as error:  # the model thread itself failed (e.g. shut down): fail this batch only
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        self.batches += 1
        self.images += len(batch)
        for request, outcome in zip(batch, outcomes, strict=True):
            if request.future.done():
                continue
            if isinstance(outcome, ChestlensInputError):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)

    def _screen_batch(self, images: list[MedicalImage]) -> list[Outcome]:
        """Screen ``images`` together; if the batch raises, one at a time (see the module docstring)."""
        if len(images) > 1:
            try:
                screened = self.screener.iter_screen(images, batch_size=len(images))
                return [_outcome(image, o) for image, o in zip(images, screened, strict=True)]
            except Exception as error:
                log.warning(
                    f"a batch of {len(images)} failed ({type(error).__name__}); screening them one at a time",
                    extra={"event": "batch_split"},
                )
        return [self._screen_alone(image) for image in images]

    def _screen_alone(self, image: MedicalImage) -> Outcome:
        """One image in a batch of its own; an exception becomes this image's error."""
        try:
            (outcome,) = self.screener.iter_screen([image], batch_size=1)
        except Exception as error:
            log_failure("screening one input failed", error, event="input_failed")
            return ChestlensInputError(
                image.meta.source_path, f"the image could not be screened ({type(error).__name__})"
            )
        return _outcome(image, outcome)


def _outcome(image: MedicalImage, outcome: Screening | FailedInput) -> Outcome:
    """A screener outcome for the request of ``image``: a :class:`FailedInput` becomes its error."""
    if isinstance(outcome, FailedInput):
        return ChestlensInputError(image.meta.source_path, outcome.error)
    return outcome
