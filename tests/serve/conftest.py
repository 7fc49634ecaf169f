"""Fixtures for the web service tests: apps on temporary data folders, real radiographs, PostgreSQL.

PostgreSQL: ``CHESTLENS_TEST_POSTGRES_URL`` (a SQLAlchemy URL of an empty database; ``.ci/run`` starts a
server and sets it). Without it the PostgreSQL tests skip, or fail under ``CHESTLENS_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from serve_helpers import require_or_skip, serving

from chestlens.export.browser import CHROMIUM_ARGS, chromium_path, free_port
from chestlens.serve.settings import ServeSettings

POSTGRES_URL_ENV = "CHESTLENS_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "CHESTLENS_REQUIRE_POSTGRES"


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    """One ready service with the bundled models and SQLite, shared by a test module."""
    with serving(ServeSettings(data_dir=tmp_path_factory.mktemp("serve"), device="cpu")) as ready:
        yield ready


@pytest.fixture(scope="session")
def radiographs(source_dir) -> Callable[[int], list[Path]]:
    """Factory: ``n`` real chest radiographs (Kermany JPEG and NIH PNG, alternating), stable order."""

    def pick(n: int) -> list[Path]:
        kermany = sorted((source_dir("kermany-chest-xray") / "chest_xray").rglob("*.jpeg"))
        nih = sorted((source_dir("nih-chestxray14-darkcovidnet") / "X-Ray Image DataSet").rglob("*.png"))
        mixed = [p for pair in zip(kermany, nih, strict=False) for p in pair]
        return mixed[:n]

    return pick


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL database (see the module docstring)."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        require_or_skip(REQUIRE_POSTGRES_ENV, f"no PostgreSQL server: set {POSTGRES_URL_ENV}")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """Both back ends: a fresh SQLite file, and the PostgreSQL test database emptied first."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    url = request.getfixturevalue("postgres_url")
    from chestlens.serve.store import Base, Store

    store = Store(url)
    Base.metadata.drop_all(store.engine)
    store.close()
    return url


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """``chestlens serve`` run as a user would, in a subprocess on a free loopback port; yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("log") / "serve.log"
    command = [sys.executable, "-m", "chestlens.cli", "serve", "--port", str(port), "--device", "cpu"]
    command += ["--data-dir", str(tmp_path_factory.mktemp("data"))]
    with log.open("w") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's ``chromium``) driven by Playwright; skips without it, or fails under
    ``CHESTLENS_REQUIRE_BROWSER=1`` (CI)."""
    executable = chromium_path()
    if not Path(executable).is_file():
        require_or_skip(
            "CHESTLENS_REQUIRE_BROWSER", f"no Chromium at {executable} (apt-get install chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_or_skip("CHESTLENS_REQUIRE_BROWSER", "the playwright package is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
        )
        yield launched
        launched.close()
