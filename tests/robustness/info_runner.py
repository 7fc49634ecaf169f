"""Run ``chestlens info --json PATH`` on many paths in one process start.

Usage: ``python info_runner.py OUT PATH...``. ``chestlens info`` takes one path, and a fresh interpreter
per path costs about 1.3 s of imports. This runner imports the CLI once, then forks one child per path.
Each child is what the ``chestlens`` console script is: ``chestlens.cli.main(["info", "--json", PATH])``,
exiting with its code, an uncaught exception printed as a traceback with exit code 1; its stdout and
stderr (file descriptors 1 and 2, so warnings printed by libraries are caught too) go to files. The
parent collects each child's exit status and peak resident memory (``os.wait4``) and writes one JSON
line per path to ``OUT``: ``{"path", "returncode", "stdout", "stderr", "max_rss_bytes", "seconds"}``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from chestlens.cli import main

#: ``ru_maxrss`` is in KiB on Linux.
KIB = 1024


def run_in_child(path: str, out: Path, err: Path) -> None:
    """In the forked child: redirect fds 1 and 2, run ``chestlens info --json path``, exit with its code."""
    for fd, target in ((1, out), (2, err)):
        handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(handle, fd)
        os.close(handle)
    code = 0
    try:
        main(["info", "--json", path])
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(path: str, scratch: Path) -> dict[str, object]:
    """One ``chestlens info --json path`` in a forked child; its outcome and peak memory."""
    out, err = scratch / "stdout", scratch / "stderr"
    started = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        run_in_child(path, out, err)
    _, status, usage = os.wait4(child, 0)
    return {
        "path": path,
        "returncode": os.waitstatus_to_exitcode(status),
        "stdout": out.read_text(errors="replace"),
        "stderr": err.read_text(errors="replace"),
        "max_rss_bytes": usage.ru_maxrss * KIB,
        "seconds": round(time.perf_counter() - started, 3),
    }


if __name__ == "__main__":
    report, paths = Path(sys.argv[1]), sys.argv[2:]
    with tempfile.TemporaryDirectory() as scratch, report.open("w") as lines:
        for argument in paths:
            lines.write(json.dumps(run(argument, Path(scratch))) + "\n")
