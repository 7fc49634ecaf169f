"""Inference off the event loop with dynamic micro-batching and a bounded queue.

Requests put decoded images on an :class:`asyncio.Queue` of ``queue_size``; when it is full the request
is refused at once (:class:`QueueFullError`, answered 503 with Retry-After) instead of growing memory. One
collector task takes the first waiting image, then whatever else arrives within ``batch_wait_ms`` (up
to ``max_batch``), and runs the batch through ``Screener.iter_screen`` on the single model thread. While
a batch runs, new requests pile up and form the next batch, so the batch size follows the load.
CT series (:meth:`Engine.run_exclusive`) run on the same model thread, between batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from chestlens.io import MedicalImage
from chestlens.pipeline.schema import FailedInput
from chestlens.pipeline.screener import Screener, Screening

T = TypeVar("T")


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
        queue_size: most images waiting; more answer :class:`QueueFullError`.
    """

    def __init__(self, screener: Screener, *, max_batch: int, batch_wait_ms: float, queue_size: int) -> None:
        self.screener = screener
        self.max_batch = max(1, max_batch)
        self.wait_s = max(0.0, batch_wait_ms) / 1000.0
        self.queue: asyncio.Queue[_Request] = asyncio.Queue(maxsize=max(1, queue_size))
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
        except Exception as error:  # a model failure fails this batch only; the collector keeps going
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        self.batches += 1
        self.images += len(batch)
        for request, outcome in zip(batch, outcomes, strict=True):
            if not request.future.done():
                request.future.set_result(outcome)

    def _screen_batch(self, images: list[MedicalImage]) -> list[Screening]:
        outcomes = list(self.screener.iter_screen(images, batch_size=len(images)))
        failed = [o for o in outcomes if isinstance(o, FailedInput)]
        if failed:  # decoded images cannot fail to read; anything else is a bug worth a 500
            raise RuntimeError(f"screening failed: {failed[0].error}")
        return outcomes  # type: ignore[return-value]
