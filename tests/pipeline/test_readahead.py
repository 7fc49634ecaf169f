"""The screener's read-ahead: input order kept, and never more than ``ahead`` items pulled past the
consumer (``Executor.map`` would pull the whole archive at once and hold every decoded image)."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from chestlens.pipeline.readahead import read_ahead

pytestmark = pytest.mark.inference


class CountingSource:
    """An endless input stream that counts how many items were taken from it."""

    def __init__(self) -> None:
        self.pulled = 0
        self.lock = threading.Lock()

    def __iter__(self):
        for i in itertools.count():
            with self.lock:
                self.pulled += 1
            yield i


def test_order_and_bound() -> None:
    source = CountingSource()
    with ThreadPoolExecutor(4) as pool:
        stream = read_ahead(pool, lambda x: x * x, source, ahead=5)
        got = []
        for _ in range(50):
            got.append(next(stream))
            assert source.pulled <= len(got) + 5
        stream.close()
    assert got == [i * i for i in range(50)]


def test_finite_input_and_errors_propagate() -> None:
    with ThreadPoolExecutor(2) as pool:
        assert list(read_ahead(pool, str, range(7), ahead=3)) == [str(i) for i in range(7)]
        assert list(read_ahead(pool, str, [], ahead=3)) == []

        def fail_on_two(x: int) -> int:
            if x == 2:
                raise OSError("unreadable")
            return x

        with pytest.raises(OSError, match="unreadable"):
            list(read_ahead(pool, fail_on_two, range(5), ahead=2))
        with pytest.raises(ValueError, match="ahead"):
            next(read_ahead(pool, str, range(3), ahead=0))
