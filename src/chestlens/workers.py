"""Process pools that are safe to start from a process that already ran torch.

A plain ``fork`` copies the parent's OpenMP thread-pool state; once torch has run a parallel kernel in the
parent, forked workers can block forever on an inherited lock. chestlens therefore starts its workers from
a ``forkserver``: one clean server process per program, which imports the decoding modules once and forks
every worker from that state (so a pool starts in well under a second after the first).

As with any non-``fork`` start method, a script that calls chestlens' parallel functions at import time
must use an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

#: Below this many items the work runs in the calling process: a pool would cost more than it saves.
MIN_ITEMS_FOR_POOL = 200

_PRELOAD = ["chestlens.data.tensors", "chestlens.data.hashing"]


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` processes forked from chestlens' fork server."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)
