"""Bounded, ordered read-ahead on a thread pool.

``Executor.map`` submits every item at once (Python < 3.14 has no ``buffersize``): over an archive, fast
decoding threads then hold thousands of decoded images while the slower models consume them, so memory
grows with the number of inputs. :func:`read_ahead` keeps at most ``ahead`` calls submitted but not yet
consumed, so memory stays flat however many inputs stream through.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def read_ahead(pool: Executor, fn: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[R]:
    """``fn(item)`` for each item, in input order, with at most ``ahead`` (>= 1) calls in flight or done
    but not yet yielded. Closing the iterator early cancels the calls not yet started."""
    if ahead < 1:
        raise ValueError(f"ahead must be >= 1, got {ahead}")
    source = iter(items)
    queue: deque[Future[R]] = deque()
    try:
        while True:
            while len(queue) < ahead and (item := next(source, _END)) is not _END:
                queue.append(pool.submit(fn, item))
            if not queue:
                return
            yield queue.popleft().result()
    finally:
        for future in queue:
            future.cancel()


_END = object()
