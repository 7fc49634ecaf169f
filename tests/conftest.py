"""Shared fixtures: the real data root and pip-shipped DICOM files.

Tests that need ``$CHESTLENS_DATA`` (default ``../shared/data``) skip with a reason when it is absent;
CI sets ``CHESTLENS_REQUIRE_DATA=1`` so that absence fails instead of skipping.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from chestlens.data.root import DATA_ENV, REQUIRE_DATA_ENV, data_root

REPO = Path(__file__).resolve().parents[1]


def _missing(reason: str) -> None:
    if os.environ.get(REQUIRE_DATA_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_DATA_ENV}=1 makes missing data a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data root; skips (or fails under CHESTLENS_REQUIRE_DATA=1) when it is absent."""
    root = data_root() or (REPO.parent / "shared" / "data")
    if not root.is_dir():
        _missing(f"real data not found: set {DATA_ENV} to the shared data folder (tried {root})")
    return root


@pytest.fixture(scope="session")
def source_dir(shared_data: Path):
    """Factory: ``source_dir("kermany-chest-xray")`` returns that source's folder or skips/fails."""

    def get(name: str) -> Path:
        path = shared_data / name
        if not path.is_dir():
            _missing(f"source {name!r} not found under {shared_data}")
        return path

    return get


@pytest.fixture(scope="session")
def pip_dicom():
    """Factory: path of a DICOM file shipped by the pip packages pydicom / pydicom-data (no download)."""
    from chestlens.io.samples import sample_path

    return sample_path


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread is faster and leaves the other core to whatever else runs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def offline(monkeypatch):
    """Any network connection attempt fails the test: nothing in chestlens may download at run time."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def tiny_bundle(tmp_path):
    """Factory: ``tiny_bundle(kind, folder=..., fp16=False, **fields)`` saves a seeded tiny bundle of any
    registered kind (``tests/bundle_kinds.py``; ``fields`` override :class:`BundleSpec` fields) and
    returns its folder."""
    from bundle_kinds import save_tiny

    def make(kind: str, folder: str | None = None, **fields) -> Path:
        return save_tiny(kind, tmp_path / (folder or kind), **fields)

    return make


@pytest.fixture
def tiny_classifier_bundle(tiny_bundle):
    """Factory: a randomly initialised 3-class EfficientNet-Lite0 classifier bundle (32 px); returns its
    folder. ``tiny_classifier_bundle(name="x", metrics={...})`` overrides any :class:`BundleSpec` field."""

    def make(folder: str = "bundle", **fields) -> Path:
        return tiny_bundle("classifier", folder, **{"name": "t", "version": "1", **fields})

    return make


@pytest.fixture
def tiny_segmenter_bundle(tmp_path):
    """Factory: a seeded random 3-class U-Net (EfficientNet-Lite0 encoder, 64 px) lesion bundle.

    Returns ``(folder, model)``; ``tiny_segmenter_bundle(task="lesions-xray", run_if_positive=[...])``
    overrides any :class:`BundleSpec` field.
    """
    from bundle_kinds import make_tiny
    from chestlens.models.bundle import save_bundle

    def make(folder: str = "seg", **fields):
        spec, model = make_tiny("segmenter")
        return save_bundle(spec.model_copy(update=fields), model.state_dict(), tmp_path / folder), model

    return make


@pytest.fixture(scope="session")
def live_service(tmp_path_factory):
    """Factory: ``live_service(**settings)`` runs ``chestlens serve`` (bundled models, CPU, ``settings``
    overriding :class:`ServeSettings`) in a uvicorn thread on a free loopback port and returns its base
    URL once ready; all are stopped at the session's end."""
    import threading
    import time

    import httpx
    import uvicorn

    from chestlens.export.browser import free_port
    from chestlens.serve.app import create_app
    from chestlens.serve.settings import ServeSettings

    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def ready(base: str) -> bool:
        try:
            return httpx.get(f"{base}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def start(**overrides: object) -> str:
        defaults = {"data_dir": tmp_path_factory.mktemp("live-service"), "device": "cpu"}
        settings = ServeSettings(**(defaults | overrides))
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180.0
        while not ready(base):
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.2)
        return base

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join()
