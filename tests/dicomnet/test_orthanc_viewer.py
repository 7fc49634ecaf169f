"""How chestlens' results look in a viewer: Orthanc (started by .ci/orthanc.sh) sends RG1_UNCR.dcm to
``chestlens listen --secondary-capture``, the SR, SEG and secondary-capture overlay come back into the
study, and headless Chromium (Debian's ``chromium``, driven by Playwright) opens the overlay in Orthanc
Explorer's instance preview. The screenshot goes to ``ci-artifacts/orthanc-explorer-overlay.png``
(shown in docs/pacs.md).

Debian packages no viewer that draws a DICOM SEG over its image (no Stone Web Viewer or OHIF; the
``orthanc-webviewer`` plugin shows images only), hence the secondary capture. Needs the Orthanc variables
of tests/dicomnet/test_orthanc.py and Chromium (``$CHESTLENS_BROWSER``, else ``chromium`` on the PATH):
without them the test skips, in CI it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomnet_helpers import ENV_DICOM, ENV_PORT, ENV_URL, browser_unavailable, orthanc_instances, wait_for
from PIL import Image
from pydicom.uid import SecondaryCaptureImageStorage

from chestlens.dicomnet.settings import Destination
from chestlens.export.browser import CHROMIUM_ARGS, chromium_path
from chestlens.pipeline.dicom_sc import SC_SERIES_DESCRIPTION
from chestlens.pipeline.overlay import LUNG_COLOUR

pytestmark = pytest.mark.slow
SCREENSHOT = Path(__file__).resolve().parents[2] / "ci-artifacts" / "orthanc-explorer-overlay.png"
VIEWPORT = {"width": 1600, "height": 1000}


def _explorer_preview(base_url: str, instance: str, path: Path) -> None:
    """Screenshot of Orthanc Explorer's page of ``instance`` with its preview open (the lightbox that
    Explorer's "Preview the instance" shows over the page)."""
    executable = chromium_path()
    if not Path(executable).is_file():
        browser_unavailable(f"no Chromium at {executable}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("the playwright package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{base_url}/app/explorer.html#instance?uuid={instance}")
            page.wait_for_selector("#instance-info li")
            with page.expect_response(
                lambda response: f"/instances/{instance}/preview" in response.url
            ) as shown:
                page.click("#instance-preview")
            assert shown.value.status == 200 and shown.value.headers["content-type"] == "image/png"
            page.wait_for_selector("#lbBottomContainer", state="visible")
            page.wait_for_function("() => jQuery(':animated').length === 0")  # the lightbox stopped growing
            page.screenshot(path=str(path))
        finally:
            browser.close()


def test_orthanc_explorer_shows_the_secondary_capture_overlay(orthanc, start_listener, pip_dicom, tmp_path):
    path = pip_dicom("RG1_UNCR.dcm")
    upload = orthanc.post("/instances", content=path.read_bytes()).json()
    orthanc.delete(f"/studies/{upload['ParentStudy']}").raise_for_status()  # results of earlier runs
    upload = orthanc.post("/instances", content=path.read_bytes()).json()
    study = upload["ParentStudy"]
    start_listener(
        tmp_path,
        (Destination.parse(os.environ[ENV_DICOM]),),
        port=int(os.environ[ENV_PORT]),
        allowed_callers=("ORTHANC",),
        secondary_capture=True,
    )

    sent = orthanc.post(
        "/modalities/chestlens/store", json={"Resources": [upload["ID"]], "Synchronous": True}
    )
    sent.raise_for_status()
    wait_for(
        lambda: len(orthanc.get(f"/studies/{study}/instances").json()) == 4, 180, "SR, SEG and SC in Orthanc"
    )

    series = {s["MainDicomTags"]["Modality"]: s for s in orthanc.get(f"/studies/{study}/series").json()}
    assert sorted(series) in (["CR", "OT", "SEG", "SR"], ["DX", "OT", "SEG", "SR"])
    assert series["OT"]["MainDicomTags"]["SeriesDescription"] == SC_SERIES_DESCRIPTION
    sc = orthanc_instances(orthanc, study)["OT"]
    assert sc.SOPClassUID == SecondaryCaptureImageStorage
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == pydicom.dcmread(path).SOPInstanceUID

    SCREENSHOT.parent.mkdir(exist_ok=True)
    _explorer_preview(os.environ[ENV_URL], series["OT"]["Instances"][0], SCREENSHOT)

    shot = np.asarray(Image.open(SCREENSHOT).convert("RGB")).astype(np.int16)
    assert shot.shape == (VIEWPORT["height"], VIEWPORT["width"], 3)
    assert shot.std() > 20  # not a blank page
    contour = (np.abs(shot - np.asarray(LUNG_COLOUR)).max(axis=2) < 30).sum()
    assert contour > 500, f"{contour} lung-contour pixels: the overlay is not on the screenshot"
