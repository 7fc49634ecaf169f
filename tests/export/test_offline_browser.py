"""The offline screener in real headless Chromium, served by ``chestlens serve``: install on the first
visit, stop the server, restart the browser, reload, screen real radiographs (PNG and DICOM) and compare
the page's probabilities with Python ONNX Runtime on the same files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.export.browser import (
    INSTALLED,
    READY,
    ServerThread,
    open_browser,
    plain_static_server,
    screen_file,
    wait_for,
)
from chestlens.export.verify import ort_session, unit_image
from chestlens.models.spec import read_spec

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

BROWSER_TOLERANCE = 1e-3


def python_probabilities(web_build: Path, image: Path) -> np.ndarray:
    """Python ONNX Runtime on the same file, with chestlens' own decoding."""
    index = json.loads((web_build / "models.json").read_text())
    onnx = web_build / index["models"]["classifier"]["onnx"]
    spec = read_spec("xray3-screener")
    return ort_session(onnx).run(["probabilities"], {"image": unit_image(image, spec)})[0][0]


def test_offline_after_restart_matches_python(
    serve_app, web_build, chromium, tmp_path, source_dir, pip_dicom
):
    png = sorted((source_dir("nih-chestxray14-darkcovidnet")).rglob("*.png"))[0]
    dicom = pip_dicom("RG1_UNCR.dcm")
    compressed = pip_dicom("RG1_J2KR.dcm")
    profile = tmp_path / "profile"
    with ServerThread(serve_app) as server:
        url = f"{server.url}/offline/"
        context = open_browser(chromium, profile)
        page = context.new_page()
        page.goto(url)
        wait_for(page, INSTALLED)
        assert page.evaluate("self.crossOriginIsolated"), "COOP/COEP headers missing"
        assert page.evaluate("window.chestlens.threads") >= 1
        context.close()
    # The server is gone: a fresh browser on the same profile must work from the service worker's cache.
    context = open_browser(chromium, profile)
    try:
        page = context.new_page()
        page.goto(url)
        wait_for(page, READY)
        assert RESEARCH_USE_DISCLAIMER in page.inner_text("body")
        for image in (png, dicom):
            result = screen_file(page, image)
            assert "error" not in result, result
            ours = np.array(list(result["probabilities"].values()))
            expected = python_probabilities(web_build, image)
            assert np.abs(ours - expected).max() < BROWSER_TOLERANCE, (image.name, ours, expected)
            assert result["decisions"] and result["disclaimer"] == RESEARCH_USE_DISCLAIMER
            share = result["explanation"]["energy_in_lungs"]
            assert share is not None and 0.0 <= share <= 1.0
            assert 0.05 < result["lungs"]["area_fraction"] < 0.8
        failed = screen_file(page, compressed)
        assert "cannot be decoded in the browser" in failed["error"]
    finally:
        context.close()


def test_static_host_and_new_build_replace_the_cached_one(web_build, chromium, tmp_path):
    """From a plain static server (no COOP/COEP) the page runs with one thread until its service
    worker adds the isolation headers; a new build (new worker, new build id) then takes over the
    installed page and drops the old cache."""
    site = shutil.copytree(web_build, tmp_path / "site")
    old = json.loads((site / "models.json").read_text())["build"]
    with plain_static_server(site) as base:
        context = open_browser(chromium, tmp_path / "profile")
        try:
            page = context.new_page()
            page.goto(f"{base}/")
            wait_for(page, INSTALLED)
            wait_for(page, READY)
            assert page.evaluate("[self.crossOriginIsolated, window.chestlens.threads]") == [False, 1]
            page.reload()
            wait_for(page, READY)
            assert page.evaluate("self.crossOriginIsolated"), "the service worker adds COOP/COEP"
            new = "0123456789abcdef"
            for name in ("models.json", "sw.js"):
                (site / name).write_text((site / name).read_text().replace(old, new))
            page.reload()  # the browser finds the changed sw.js; the page reloads when it takes over
            page.wait_for_selector(f"#build:has-text('{new}')", timeout=120_000)
            wait_for(page, READY)
            assert page.evaluate("caches.keys()") == [f"chestlens-offline-{new}"]
        finally:
            context.close()
