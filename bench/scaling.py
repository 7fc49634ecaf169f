"""Scaling curve of batch screening: time and peak memory at growing input counts.

    python bench/scaling.py [--counts 100,1000,10000] [--batch-size 8] [--json OUT.json]

The shared radiographs (Kermany JPEGs and ieee8023 images under ``$CHESTLENS_DATA``, or the pip-shipped
RG1 radiograph without it) are repeated up to each count and screened as ``chestlens predict --out``
does: ``Screener.iter_screen`` (decoding threads, batched models, Grad-CAM) with each batch of records
appended to a ``results.jsonl``. Reported per count: seconds, images/s, seconds per image, and the
process's resident memory (RSS) before the run and its peak during it, sampled every 20 ms. Flat
memory and constant seconds per image mean the pipeline streams: nothing grows with the archive.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from common import json_main, shared_radiographs

from chestlens.pipeline.batch import ResultLog, record
from chestlens.pipeline.screener import Screener


class PeakRss:
    """Samples this process's RSS in a thread; ``peak`` is the largest value seen (bytes)."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.process = psutil.Process()
        self.interval_s = interval_s
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def screen_count(screener: Screener, files: list[Path], count: int, batch_size: int) -> dict[str, float]:
    """Screen ``count`` inputs (``files`` repeated) into a temporary results.jsonl."""
    sources = list(itertools.islice(itertools.cycle(files), count))
    with tempfile.TemporaryDirectory() as tmp:
        log = ResultLog(Path(tmp))
        before = psutil.Process().memory_info().rss
        pending: list[dict] = []
        with PeakRss() as rss:
            start = time.perf_counter()
            for i, outcome in enumerate(screener.iter_screen(sources, batch_size=batch_size)):
                pending.append(record(str(i), getattr(outcome, "result", outcome)))
                if len(pending) == batch_size:
                    log.append(pending)
                    pending = []
            log.append(pending)
            seconds = time.perf_counter() - start
    return {
        "images": count,
        "seconds": seconds,
        "img_per_s": count / seconds,
        "ms_per_image": 1000.0 * seconds / count,
        "rss_before_mb": before / 2**20,
        "peak_rss_mb": rss.peak / 2**20,
    }


def run(counts: list[int], batch_size: int = 8) -> dict[str, object]:
    files = shared_radiographs()
    screener = Screener(device="cpu")
    screen_count(screener, files, batch_size, batch_size)  # warm-up: first-call allocations
    points = [screen_count(screener, files, n, batch_size) for n in counts]
    return {
        "distinct_images": len(files),
        "batch_size": batch_size,
        "cpu_cores": len(os.sched_getaffinity(0)),  # the cores this process may run on (taskset)
        "torch_threads": torch.get_num_threads(),
        "points": points,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    def configure(parser):
        parser.add_argument("--counts", default="100,1000,10000", help="comma-separated input counts")
        parser.add_argument("--batch-size", type=int, default=8)

    def run_args(args):
        return run([int(c) for c in args.counts.split(",")], args.batch_size)

    return json_main(__doc__.splitlines()[0], argv, configure, run_args)


if __name__ == "__main__":
    main()
