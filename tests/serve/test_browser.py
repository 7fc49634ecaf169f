"""The page in real headless Chromium (Debian's ``chromium``), against ``chestlens serve`` run as a user
would run it: upload a real radiograph, wait for the result, compare the probabilities shown with the
API's JSON, toggle the heatmap from the keyboard, check the phone layout; screenshots go to ci-artifacts/.

Chromium comes from ``CHESTLENS_BROWSER`` (else ``chromium`` on the PATH); without it the test skips,
or fails under ``CHESTLENS_REQUIRE_BROWSER=1`` (CI).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "ci-artifacts"


def test_page_uploads_shows_and_toggles(live_server, browser, radiographs):
    server = live_server
    ARTIFACTS.mkdir(exist_ok=True)
    image = radiographs(1)[0]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    outside = []
    page.on(
        "request", lambda r: None if r.url.startswith((server, "blob:", "data:")) else outside.append(r.url)
    )
    page.goto(server + "/")
    page.set_input_files("#file-input", str(image))
    page.wait_for_selector("#probabilities tbody tr", timeout=90_000)
    page.wait_for_function("document.getElementById('layer-image').complete")

    latest = httpx.get(f"{server}/api/v1/screenings", params={"limit": 1}).json()[0]
    result = httpx.get(server + latest["url"]).json()["result"]
    shown = page.eval_on_selector_all(
        "#probabilities tbody tr", "rows => rows.map(r => [r.dataset.label, Number(r.dataset.probability)])"
    )
    assert dict(shown) == result["classification"]["probabilities"]
    texts = page.eval_on_selector_all(
        "#probabilities tbody tr td:nth-child(2)", "c => c.map(x => x.textContent)"
    )
    assert texts == [f"{p:.3f}" for p in result["classification"]["probabilities"].values()]
    assert result["gate"]["reason"] in page.inner_text("#gate")
    assert "Research use only" in page.inner_text("#result")
    assert image.name in page.inner_text("#history")  # the file name lives only in the browser tab

    assert page.is_hidden("#layer-heatmap")
    page.focus("#toggle-heatmap")
    page.keyboard.press("Space")  # keyboard, not the mouse
    page.wait_for_selector("#layer-heatmap", state="visible")
    assert page.eval_on_selector("#layer-heatmap", "img => img.naturalWidth") > 0
    page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)
    assert not outside, outside

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1] + 1, width
    page.screenshot(path=str(ARTIFACTS / "serve-page-phone.png"), full_page=True)
    page.close()
