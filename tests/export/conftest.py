"""Fixtures for the offline mode: one web build per session, a ``chestlens serve`` app in a thread, and
headless Debian Chromium driven by Playwright (never ``playwright install``)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def web_build(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``chestlens export web`` into a temporary folder (both bundled models, verified on real images)."""
    from chestlens.export.web import build_web

    if shutil.which("npm") is None:
        pytest.fail("npm is needed to vendor onnxruntime-web (install Node.js)")
    return build_web(tmp_path_factory.mktemp("web") / "site", root=shared_data, check_images=8).folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """A uvicorn server for ``app`` on a free loopback port, in a thread; :meth:`stop` ends it."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def serve_app(web_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The ``chestlens serve`` app (create_app) with the web build at /offline/ (models not loaded:
    the lifespan is off, the offline page needs none of the server's models)."""
    from chestlens.export.web import WEB_DIR_ENV
    from chestlens.serve.app import create_app
    from chestlens.serve.settings import ServeSettings

    monkeypatch.setenv(WEB_DIR_ENV, str(web_build))
    return create_app(ServeSettings(data_dir=tmp_path / "serve"))


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Playwright's Chromium launcher bound to the system Chromium."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium not found: apt-get install chromium")
    with sync_playwright() as playwright:
        yield playwright.chromium


def open_browser(chromium: object, profile: Path) -> object:
    """A persistent (profile on disk) headless Chromium context: closing it and opening another on the
    same profile is a browser restart, with the service worker and its cache kept."""
    return chromium.launch_persistent_context(  # type: ignore[attr-defined]
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
