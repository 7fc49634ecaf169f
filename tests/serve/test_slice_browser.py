"""The server page's slice browser for CT series results.

* ``slices.js`` (run in Node) reads a series as chestlens does: a zip of real COVID-CT-MD P001 slices
  (JPEG Lossless) with shuffled names comes out in chestlens.io.series' order with the same Hounsfield
  units, and pydicom's own files (JPEG Lossless 8- and 16-bit, uncompressed signed, Implicit VR) decode to
  pydicom's values.
* In headless Chromium against a live ``chestlens serve``: a zipped run of contiguous P001 slices is
  uploaded; the slider (a labelled range input with ``aria-valuetext`` "slice k of n") moves through
  every slice from the keyboard (arrows, Page Up/Down, Home/End) and the mouse wheel, the image changes
  with the slice, the lesion overlay toggles, the lung toggle says why it is off, the research-use text is
  visible; a screenshot goes to ``ci-artifacts/serve-slice-browser.png``.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from serve_helpers import require_or_skip

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.export.browser import CHROMIUM_ARGS, chromium_path

STATIC = Path(__file__).resolve().parents[2] / "src" / "chestlens" / "serve" / "static"
ARTIFACTS = Path(__file__).resolve().parents[2] / "ci-artifacts"
FIRST, COUNT = 78, 8  # contiguous P001 slices with lesions on some of them
NODE_SCRIPT = """
const fs = require("fs");
const api = require(process.argv[2]);
(async () => {
  const zip = new Uint8Array(fs.readFileSync(process.argv[3]));
  const series = api.sortSeries(await api.unzip(zip));
  const out = { names: series.slices.map((s) => s.name), sortedBy: series.sortedBy };
  const hu = series.slices.map((s) => api.sliceHu(s).hu);
  const all = new Float32Array(hu.flatMap((h) => Array.from(h)));
  fs.writeFileSync(process.argv[4] + ".series", Buffer.from(all.buffer));
  for (const path of process.argv.slice(5)) {
    const bytes = new Uint8Array(fs.readFileSync(path));
    const one = api.sliceHu({ header: api.parseDicom(bytes), bytes });
    fs.writeFileSync(process.argv[4] + "-" + path.split("/").pop(), Buffer.from(one.hu.buffer));
  }
  fs.writeFileSync(process.argv[4], JSON.stringify(out));
})().catch((error) => { console.error(error); process.exit(1); });
"""


def p001_slices(source_dir) -> list[Path]:
    """``COUNT`` contiguous slices of COVID-CT-MD P001 (by Instance Number)."""
    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    files = sorted(
        (p for p in folder.iterdir() if p.is_file()),
        key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber),
    )
    return files[FIRST : FIRST + COUNT]


@pytest.fixture(scope="module")
def series_zip(source_dir, tmp_path_factory) -> Path:
    """The slices zipped (deflated) in a sub-folder under shuffled names, plus a junk member."""
    path = tmp_path_factory.mktemp("series") / "P001-slices.zip"
    names = [f"P001/slice-{k:02d}.dcm" for k in random.Random(1).sample(range(COUNT), COUNT)]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, slice_path in zip(names, p001_slices(source_dir), strict=True):
            archive.writestr(name, slice_path.read_bytes())
        archive.writestr("__MACOSX/._junk", b"junk")
    return path


@pytest.mark.shared_data
def test_slices_js_reads_a_series_as_chestlens_does(series_zip, pip_dicom, tmp_path):
    from chestlens.io import read_image
    from chestlens.io.series import scan_series

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(series_zip) as archive:
        archive.extractall(folder, [n for n in archive.namelist() if n.startswith("P001/")])
    volume = read_image(folder / "P001").pixels
    [info] = scan_series(folder / "P001")
    singles = [pip_dicom(n) for n in ("JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm")]
    singles += [pip_dicom(n) for n in ("CT_small.dcm", "MR_small_implicit.dcm")]
    script = tmp_path / "read.cjs"
    script.write_text(NODE_SCRIPT)
    out = tmp_path / "out"
    command = [node, script, STATIC / "slices.js", series_zip, out, *singles]
    subprocess.run([str(c) for c in command], check=True, capture_output=True, text=True)
    report = json.loads(out.read_text())
    assert [Path(n).name for n in report["names"]] == [p.name for p in info.files]
    assert report["sortedBy"] == info.sorted_by == "image_position"
    hu = np.fromfile(f"{out}.series", np.float32).reshape(volume.shape)
    assert np.array_equal(hu, volume.astype(np.float32))  # JPEG Lossless decoded exactly, same order
    for path in singles:
        ds = pydicom.dcmread(path)
        expected = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        got = np.fromfile(f"{out}-{path.name}", np.float32).reshape(expected.shape)
        assert np.array_equal(got, expected), path.name


@pytest.fixture(scope="module")
def browser():
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


def canvas_state(page) -> dict:
    return page.evaluate(
        """() => { const c = document.getElementById('slice-canvas');
        return { slice: Number(c.dataset.slice), image: c.dataset.image, lesions: Number(c.dataset.lesions),
                 pixels: c.toDataURL('image/png') }; }"""
    )


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
    page.wait_for_selector('#slice-canvas[data-image="decoded"]', timeout=60_000)

    latest = httpx.get(f"{server}/api/v1/screenings", params={"limit": 1}).json()[0]
    result = httpx.get(server + latest["url"]).json()["result"]
    n = result["input"]["n_slices"]
    assert n == COUNT and result["lesions"] and result["lesions"]["ran"]
    slider = page.locator("#slice-slider")
    assert page.get_attribute("#slice-slider", "type") == "range"
    assert page.inner_text("label[for=slice-slider]").startswith("Slice")  # a visible label
    assert RESEARCH_USE_DISCLAIMER in page.inner_text("#slice-browser")

    # The keyboard moves through every slice: Home, then ArrowRight n-1 times, each a new image.
    slider.focus()
    page.keyboard.press("Home")
    seen = [canvas_state(page)]
    for _ in range(n - 1):
        page.keyboard.press("ArrowRight")
        seen.append(canvas_state(page))
    assert [s["slice"] for s in seen] == list(range(n))
    assert all(s["image"] == "decoded" for s in seen)
    assert len({s["pixels"] for s in seen}) == n  # the image changes with every slice
    assert slider.get_attribute("aria-valuetext") == f"slice {n} of {n}"
    page.keyboard.press("ArrowRight")  # stays on the last slice
    assert canvas_state(page)["slice"] == n - 1
    page.keyboard.press("Home")
    assert slider.get_attribute("aria-valuetext") == f"slice 1 of {n}"
    page.keyboard.press("PageUp")
    assert canvas_state(page)["slice"] == min(10, n - 1)
    page.keyboard.press("PageDown")
    assert canvas_state(page)["slice"] == 0
    page.keyboard.press("End")
    assert canvas_state(page)["slice"] == n - 1
    page.keyboard.press("ArrowLeft")
    assert canvas_state(page)["slice"] == n - 2

    # The mouse wheel over the image.
    page.hover("#slice-canvas")
    page.mouse.wheel(0, -120)
    page.wait_for_selector(f'#slice-canvas[data-slice="{n - 3}"]', state="attached")

    # The lesion overlay on a slice with lesions, toggled from the keyboard; lung contours are not served.
    scores = result["lesions"]["slice_scores"]
    with_lesion = max(range(n), key=lambda k: scores[k])
    largest = next(x for x in result["lesions"]["lesions"] if x["slice_index"] == with_lesion)
    page.focus("#slice-slider")
    page.keyboard.press("Home")
    for _ in range(with_lesion):
        page.keyboard.press("ArrowRight")
    on = canvas_state(page)
    assert on["slice"] == with_lesion and on["lesions"] > 0
    info = page.inner_text("#slice-info")
    assert f"{scores[with_lesion]:.2f}" in info and f"{largest['area_mm2']:.0f} mm²" in info
    page.focus("#slice-lesions")
    page.keyboard.press("Space")
    off = canvas_state(page)
    assert off["lesions"] == 0 and off["pixels"] != on["pixels"]
    page.keyboard.press("Space")
    assert canvas_state(page)["pixels"] == on["pixels"]
    assert page.is_disabled("#slice-lungs") and "not served per slice" in page.inner_text("#slice-toggles")
    page.focus("#slice-slider")
    page.locator("#slice-browser").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "serve-slice-browser.png"), full_page=True)
    assert not outside, outside
    page.close()

    # Opened from the worklist in a new tab (the files are not in it): the slider and the lesion regions
    # still work, on a black image, and the page says why.
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(server + "/")
    page.click("#history tbody tr button")
    page.wait_for_selector('#slice-canvas[data-image="none"]', timeout=60_000)
    assert "not uploaded from this tab" in page.inner_text("#slice-source")
    page.focus("#slice-slider")
    page.keyboard.press("End")
    assert page.get_attribute("#slice-slider", "aria-valuetext") == f"slice {n} of {n}"
    page.close()
