"""Fixtures for the offline mode: one web build per session, the ``chestlens serve`` app, and headless
Debian Chromium driven by Playwright (never ``playwright install``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.serve.serve_helpers import require_or_skip


@pytest.fixture(scope="session")
def web_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``chestlens export web`` into a temporary folder (the bundled models' own verified graphs)."""
    from chestlens.export.web import build_web
    from chestlens.pipeline.browser_gate import browser_gate_rules

    if shutil.which("npm") is None:
        require_or_skip(
            "CHESTLENS_REQUIRE_BROWSER", "npm is needed to vendor onnxruntime-web (install Node.js)"
        )
    return build_web(tmp_path_factory.mktemp("web") / "site", gate_rules=browser_gate_rules()).folder


@pytest.fixture
def serve_app(web_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The ``chestlens serve`` app (create_app) with the web build at /offline/; served without its
    lifespan, so the server's own models are not loaded (the offline page needs none of them)."""
    from chestlens.export.offline import WEB_DIR_ENV
    from chestlens.serve.app import create_app
    from chestlens.serve.settings import ServeSettings

    monkeypatch.setenv(WEB_DIR_ENV, str(web_build))
    return create_app(ServeSettings(data_dir=tmp_path / "serve"))


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Playwright's Chromium launcher (used with the system Chromium, see chestlens.export.browser).

    Module scope: Playwright's sync API runs an event loop while it is open, and a second
    ``sync_playwright()`` (tests/serve's browser test) cannot start until this one has stopped."""
    from playwright.sync_api import sync_playwright

    from chestlens.export.browser import chromium_path

    if not Path(chromium_path()).exists():
        require_or_skip(
            "CHESTLENS_REQUIRE_BROWSER",
            "Chromium not found: apt-get install chromium (or set CHESTLENS_BROWSER)",
        )
    with sync_playwright() as playwright:
        yield playwright.chromium
