"""Fixtures of the robustness tests: the bad-input corpus (built once per session) and one web service.

The service runs as ``chestlens serve`` in a subprocess, like ``live_server`` in ``tests/serve``, but this
one keeps the server's log (stdout and stderr) and process id, so that a test can read the log (no
traceback, no client file name) and the process' peak memory.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from corpus import Sources, build_corpus, load_sources

from chestlens.export.browser import free_port

#: Seconds the service may take to load its models and become ready.
READY_TIMEOUT_S = 180.0


@pytest.fixture(scope="session")
def corpus_sources() -> Sources:
    return load_sources()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, corpus_sources: Sources) -> tuple[Path, dict[str, Path]]:
    """``(root, {kind name: path})``: every kind of :mod:`corpus`, built under a temporary folder."""
    root = tmp_path_factory.mktemp("corpus")
    return root, build_corpus(root, corpus_sources)


@dataclass(frozen=True)
class Server:
    """A running ``chestlens serve``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    data_dir: Path

    def memory(self, field: str) -> int:
        """``VmRSS`` (resident now) or ``VmHWM`` (peak resident since start or the last
        :meth:`reset_peak`) of the process, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/PID/status")

    def reset_peak(self) -> None:
        """Set ``VmHWM`` to the current resident memory (Linux: ``5`` to ``/proc/PID/clear_refs``)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory) -> Iterator[Server]:
    """``chestlens serve`` with its default limits (bundled models, CPU, SQLite) on a free loopback port."""
    port = free_port()
    folder = tmp_path_factory.mktemp("server")
    data_dir, log = folder / "data", folder / "serve.log"
    command = [sys.executable, "-m", "chestlens.cli", "serve", "--port", str(port), "--device", "cpu"]
    command += ["--data-dir", str(data_dir)]
    with log.open("w") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(url):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield Server(url, process, log, data_dir)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
