"""The server page's slice browser for CT series results, in headless Chromium against a live
``chestlens serve``.

A zipped run of contiguous COVID-CT-MD P001 slices is uploaded from the page. The slices come from the
server (``/api/v1/screenings/{id}/slices/{k}/{layer}``), so the browser reads no file itself: the slider
(a labelled range input with ``aria-valuetext`` "slice k of n") moves through every slice from the
keyboard (arrows, Page Up/Down, Home/End) and the mouse wheel, the image changes with the slice, the
lung contour and the lesion overlay toggle, the slice's areas and score are listed, the research-use text
is visible; a screenshot goes to ``ci-artifacts/serve-slice-browser.png``. The same series opened from the
worklist in a new tab (no uploaded files there) shows the same real images.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest
from serve_helpers import p001_slices

from chestlens import RESEARCH_USE_DISCLAIMER

ARTIFACTS = Path(__file__).resolve().parents[2] / "ci-artifacts"
FIRST, COUNT = 78, 8  # contiguous P001 slices with lesions on some of them


@pytest.fixture(scope="module")
def series_zip(source_dir, tmp_path_factory) -> Path:
    """The slices zipped (deflated) in a sub-folder under shuffled names, plus a junk member."""
    path = tmp_path_factory.mktemp("series") / "P001-slices.zip"
    names = [f"P001/slice-{k:02d}.dcm" for k in random.Random(1).sample(range(COUNT), COUNT)]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, slice_path in zip(names, p001_slices(source_dir, FIRST, COUNT), strict=True):
            archive.writestr(name, slice_path.read_bytes())
        archive.writestr("__MACOSX/._junk", b"junk")
    return path


def canvas_state(page, k: int | None = None, layers: str | None = None) -> dict:
    """The slice canvas once it has drawn (slice ``k`` with the overlays ``layers``, when given)."""
    wanted = "c.dataset.busy === 'false'"
    if k is not None:
        wanted += f" && c.dataset.slice === '{k}'"
    if layers is not None:
        wanted += f" && c.dataset.layers === '{layers}'"
    page.wait_for_function(f"() => {{ const c = document.getElementById('slice-canvas'); return {wanted}; }}")
    return page.evaluate(
        """() => { const c = document.getElementById('slice-canvas');
        return { slice: Number(c.dataset.slice), image: c.dataset.image, layers: c.dataset.layers,
                 label: c.getAttribute('aria-label'), pixels: c.toDataURL('image/png') }; }"""
    )


def press(page, key: str, k: int, layers: str | None = None) -> dict:
    page.keyboard.press(key)
    return canvas_state(page, k, layers)


@pytest.mark.slow
@pytest.mark.shared_data
def test_slice_browser_in_chromium(live_service, browser, series_zip):
    import httpx

    server = live_service()
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    outside = []
    page.on(
        "request", lambda r: None if r.url.startswith((server, "blob:", "data:")) else outside.append(r.url)
    )
    page.goto(server + "/")
    page.set_input_files("#file-input", str(series_zip))
    page.wait_for_selector("#slice-browser:not([hidden])", timeout=300_000)
    page.wait_for_selector('#slice-canvas[data-image="served"]', timeout=60_000)

    latest = httpx.get(f"{server}/api/v1/screenings", params={"limit": 1}).json()[0]
    screening = httpx.get(server + latest["url"]).json()
    result, links = screening["result"], screening["slices"]
    index = httpx.get(server + links["url"]).json()
    n = result["input"]["n_slices"]
    assert n == COUNT == links["count"] and result["lesions"] and result["lesions"]["ran"]
    both = "lungs lesions"
    slider = page.locator("#slice-slider")
    assert page.get_attribute("#slice-slider", "type") == "range"
    assert page.inner_text("label[for=slice-slider]").startswith("Slice")  # a visible label
    assert RESEARCH_USE_DISCLAIMER in page.inner_text("#slice-browser")
    assert "lung contour" in page.inner_text("#slice-legend") and "ggo" in page.inner_text("#slice-legend")

    # The keyboard moves through every slice: Home, then ArrowRight n-1 times, each a new image.
    slider.focus()
    seen = [press(page, "Home", 0, both)]
    for k in range(1, n):
        seen.append(press(page, "ArrowRight", k, both))
    assert all(s["image"] == "served" and "lung contour shown" in s["label"] for s in seen)
    assert len({s["pixels"] for s in seen}) == n  # the image changes with every slice
    assert slider.get_attribute("aria-valuetext") == f"slice {n} of {n}"
    assert press(page, "ArrowRight", n - 1)["slice"] == n - 1  # stays on the last slice
    press(page, "Home", 0)
    assert slider.get_attribute("aria-valuetext") == f"slice 1 of {n}"
    press(page, "PageUp", min(10, n - 1))
    press(page, "PageDown", 0)
    press(page, "End", n - 1)
    press(page, "ArrowLeft", n - 2)

    # The mouse wheel over the image.
    page.hover("#slice-canvas")
    page.mouse.wheel(0, -120)
    canvas_state(page, n - 3)

    # On the slice with the highest lesion score: its areas and score are listed, and both overlays
    # toggle from the keyboard.
    scores = result["lesions"]["slice_scores"]
    k = max(range(n), key=lambda j: scores[j])
    facts = index["slices"][k]
    page.focus("#slice-slider")
    press(page, "Home", 0)
    for j in range(1, k + 1):
        press(page, "ArrowRight", j)
    on = canvas_state(page, k, both)
    info = page.inner_text("#slice-info")
    assert f"{scores[k]:.2f}" in info and f"{facts['lung_area_mm2']:.0f} mm²" in info
    for label, area in facts["lesion_area_mm2"].items():
        assert f"{label} {area:.0f} mm²" in info
    page.focus("#slice-lesions")
    page.keyboard.press("Space")
    no_lesions = canvas_state(page, k, "lungs")
    assert no_lesions["pixels"] != on["pixels"]
    page.keyboard.press("Space")
    assert canvas_state(page, k, both)["pixels"] == on["pixels"]
    page.focus("#slice-lungs")
    page.keyboard.press("Space")
    no_lungs = canvas_state(page, k, "lesions")
    assert no_lungs["pixels"] != on["pixels"] and "lung contour" not in no_lungs["label"]
    page.keyboard.press("Space")
    assert canvas_state(page, k, both)["pixels"] == on["pixels"]
    page.focus("#slice-slider")
    page.locator("#slice-browser").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "serve-slice-browser.png"), full_page=True)
    assert not outside, outside
    page.close()

    # Opened from the worklist in a new tab (no uploaded files in it): the same real images, per slice,
    # and the lung contour toggles.
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(server + "/")
    page.click("#history tbody tr button")
    page.wait_for_selector('#slice-canvas[data-image="served"]', timeout=60_000)
    page.focus("#slice-slider")
    again = [press(page, "Home", 0, both)]
    for j in range(1, n):
        again.append(press(page, "ArrowRight", j, both))
    assert [s["pixels"] for s in again] == [s["pixels"] for s in seen]
    page.focus("#slice-lungs")
    page.keyboard.press("Space")
    assert canvas_state(page, n - 1, "lesions")["pixels"] != again[-1]["pixels"]
    page.keyboard.press("Space")
    assert canvas_state(page, n - 1, both)["pixels"] == again[-1]["pixels"]
    page.focus("#slice-slider")
    page.keyboard.press("End")
    assert page.get_attribute("#slice-slider", "aria-valuetext") == f"slice {n} of {n}"
    page.close()
