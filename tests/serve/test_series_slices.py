"""The slices of a CT series result (issue 18): stored once as ``series.npz``, served per slice and layer.

Eight contiguous COVID-CT-MD P001 slices (JPEG Lossless, with lesions on some) are zipped and posted as
the page posts them. The served images equal the lung-windowed volume that chestlens reads, in its slice
order; the lung layer is the contour of the HU-rule lung mask; the per-slice lesion areas add up to the
result's lesion volumes; out-of-range slices, unknown layers, 2-D screenings and another submitter's
series are refused with problems; DELETE and retention remove the stored slices.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_helpers import assert_problem, p001_slices, upload, wait_ready

from chestlens.serve.app import create_app
from chestlens.serve.layers import SERIES, SLICE_SIDE
from chestlens.serve.settings import ServeSettings
from chestlens.serve.store import Store, utcnow

pytestmark = [pytest.mark.inference, pytest.mark.shared_data]

FIRST, COUNT = 78, 8  # contiguous P001 slices with lesions on some of them
KEYS = {"alice": "submitter:alice-k3y", "bob": "submitter:bob-k3y", "reader": "reader:reader-k3y"}


def _key(who: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[who].rpartition(":")[2]}


def _screen_series(client: TestClient, data: bytes, headers: dict[str, str] | None = None) -> dict:
    """POST a zipped series (as the page does) and wait for its job; the stored screening."""
    files = {"file": ("upload", data, "application/zip")}
    posted = client.post("/api/v1/screenings", files=files, headers=headers)
    assert posted.status_code == 202, posted.text
    job_url = posted.headers["location"]
    deadline = time.monotonic() + 180
    while (job := client.get(job_url, headers=headers).json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "done", job
    return client.get(job["screening_url"], headers=headers).json()


@pytest.fixture(scope="module")
def series_files(source_dir) -> list[Path]:
    return p001_slices(source_dir, FIRST, COUNT)


@pytest.fixture(scope="module")
def series_zip(series_files) -> bytes:
    """The slices zipped (deflated) under shuffled names in a sub-folder, as a user's zip would be."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for k, path in zip((3, 6, 0, 7, 2, 5, 1, 4), series_files, strict=True):
            archive.writestr(f"P001/slice-{k}.dcm", path.read_bytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def series(client, series_zip) -> dict:
    """The screening of the series on the bundled models."""
    return _screen_series(client, series_zip)


@pytest.fixture(scope="module")
def volume(series_files, tmp_path_factory) -> np.ndarray:
    """The series as chestlens reads it: HU ``(slices, rows, cols)``, inferior first."""
    from chestlens.io import read_image

    folder = tmp_path_factory.mktemp("p001")
    for path in series_files:
        (folder / path.name).write_bytes(path.read_bytes())
    return read_image(folder).pixels


def _png(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "private, max-age=3600"
    return Image.open(io.BytesIO(response.content))


def test_a_series_advertises_its_slices(client, series):
    result = series["result"]
    assert result["input"]["n_slices"] == COUNT and result["lesions"]["ran"]
    links = series["slices"]
    assert links == {
        "count": COUNT,
        "layers": ["image", "lungs", "lesions"],
        "url": f"/api/v1/screenings/{series['id']}/slices",
        "template": f"/api/v1/screenings/{series['id']}/slices/{{k}}/{{layer}}",
    }
    assert set(series["overlays"]) == {"summary", "burden"}  # the stored slices are not an overlay
    schema = client.get("/api/v1/openapi.json").json()
    assert "SliceLinks" in schema["components"]["schemas"]
    operation = schema["paths"]["/api/v1/screenings/{screening_id}/slices/{k}/{layer}"]["get"]
    layer = next(p for p in operation["parameters"] if p["name"] == "layer")
    assert layer["schema"]["enum"] == ["image", "lungs", "lesions"]


def test_per_slice_positions_areas_and_scores(client, series, series_files):
    result = series["result"]
    index = client.get(series["slices"]["url"]).json()
    assert index["count"] == COUNT and (index["rows"], index["cols"]) == (SLICE_SIDE, SLICE_SIDE)
    assert index["template"] == series["slices"]["template"]
    assert index["lesion_labels"] == ["ggo", "consolidation"]
    slices = index["slices"]
    assert [s["index"] for s in slices] == list(range(COUNT))
    # positions: ascending patient z, one slice spacing apart (P001: 2 mm)
    positions = [s["position_mm"] for s in slices]
    header = pydicom.dcmread(series_files[0], stop_before_pixels=True)
    assert np.allclose(np.diff(positions), float(header.SliceThickness), atol=0.01), positions
    spacing = float(np.median(np.diff(positions)))
    # every slice of the mid-chest run shows lungs; areas in mm² on the 512 px grid
    rows, cols = header.PixelSpacing
    assert all("lungs" in s["layers"] and s["lung_area_mm2"] > 10_000 for s in slices)
    assert all(s["lung_area_mm2"] < 512 * 512 * float(rows) * float(cols) for s in slices)
    # lesion areas per class add up to the result's volumes; each lesion's largest cross-section fits
    lesions = result["lesions"]
    for label, volume_ml in lesions["volume_ml_by_label"].items():
        total = sum(s["lesion_area_mm2"][label] for s in slices) * spacing / 1000
        assert total == pytest.approx(volume_ml, rel=1e-6), label
    for lesion in lesions["lesions"]:
        here = slices[lesion["slice_index"]]
        assert here["lesion_area_mm2"][lesion["label"]] >= lesion["area_mm2"] - 1e-6
        assert "lesions" in here["layers"]
    assert [s["lesion_score"] for s in slices] == lesions["slice_scores"]


def test_each_slice_is_served_as_the_volume_reads(client, series, volume):
    from chestlens.io.windowing import lung_window
    from chestlens.pipeline.ct_lungs import lung_mask_from_hu
    from chestlens.pipeline.overlay import LESION_COLOURS, LUNG_COLOUR, _contour
    from chestlens.preprocess.resize import resize_nearest

    template = series["slices"]["template"]
    index = client.get(series["slices"]["url"]).json()
    lungs = resize_nearest(lung_mask_from_hu(volume), (SLICE_SIDE, SLICE_SIDE))
    images = []
    for k, facts in enumerate(index["slices"]):
        image = _png(client.get(template.format(k=k, layer="image")))
        assert image.mode == "L" and image.size == (SLICE_SIDE, SLICE_SIDE)
        grey = Image.fromarray(np.round(lung_window(volume[k]) * 255).astype(np.uint8))
        grey.thumbnail((SLICE_SIDE, SLICE_SIDE), Image.Resampling.LANCZOS)
        assert np.array_equal(np.asarray(image), np.asarray(grey)), k  # the slice k of the volume
        images.append(image.tobytes())

        contour = np.asarray(_png(client.get(template.format(k=k, layer="lungs"))))
        assert contour.shape == (SLICE_SIDE, SLICE_SIDE, 4)
        assert np.array_equal(contour[..., 3] > 0, _contour(lungs[k])), k  # the pipeline's contour
        assert (contour[contour[..., 3] > 0][:, :3] == LUNG_COLOUR).all()

        regions = np.asarray(_png(client.get(template.format(k=k, layer="lesions"))))
        assert regions.shape == (SLICE_SIDE, SLICE_SIDE, 4)
        assert (regions[..., 3] > 0).any() == ("lesions" in facts["layers"]), k
        colours = {tuple(c) for c in regions[regions[..., 3] > 0][:, :3]}
        assert colours <= {LESION_COLOURS["ggo"], LESION_COLOURS["consolidation"]}
    assert len(set(images)) == COUNT


def test_slices_out_of_range_unknown_layers_and_2d_screenings(client, series, pip_dicom):
    template = series["slices"]["template"]
    for k in (COUNT, -1, 10**6):
        assert_problem(client.get(template.format(k=k, layer="image")), 404, f"slice {k}")
    assert_problem(client.get(template.format(k=0, layer="heatmap")), 422)
    assert_problem(client.get(template.format(k="x", layer="image")), 422)
    radiograph = upload(client, pip_dicom("RG1_UNCR.dcm").read_bytes()).json()
    assert radiograph["slices"] is None and "image" in radiograph["overlays"]
    assert_problem(client.get(f"/api/v1/screenings/{radiograph['id']}/slices"), 404, radiograph["id"])
    assert_problem(client.get(f"/api/v1/screenings/{radiograph['id']}/slices/0/image"), 404)
    unknown = "0" * 32
    assert_problem(client.get(f"/api/v1/screenings/{unknown}/slices"), 404)
    assert_problem(client.get(f"/api/v1/screenings/{unknown}/slices/0/image"), 404)


def test_delete_removes_the_stored_slices(client, series_zip):
    screening = _screen_series(client, series_zip)
    store: Store = client.app.state.service.store
    assert store.overlay(screening["id"], SERIES)
    assert client.delete(f"/api/v1/screenings/{screening['id']}").status_code == 204
    assert store.overlay(screening["id"], SERIES) is None
    assert_problem(client.get(screening["slices"]["url"]), 404)
    assert_problem(client.get(screening["slices"]["template"].format(k=0, layer="image")), 404)


@pytest.fixture
def keyed(tmp_path) -> Iterator[TestClient]:
    """A model-less service (uploads stored without a model run) with role keys."""
    settings = ServeSettings(
        data_dir=tmp_path / "data", device="cpu", models=(), api_keys=frozenset(KEYS.values())
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def test_a_submitter_reads_only_its_own_slices_and_retention_removes_them(keyed, series_zip):
    """Without models: lungs by the HU rule, no lesion layer; roles as for overlays."""
    mine = _screen_series(keyed, series_zip, _key("alice"))
    links = mine["slices"]
    assert links["count"] == COUNT and links["layers"] == ["image", "lungs"]  # no lesion segmenter
    lesions = links["template"].format(k=0, layer="lesions")
    assert_problem(keyed.get(lesions, headers=_key("alice")), 404, "lesions")
    index = keyed.get(links["url"], headers=_key("alice")).json()
    assert index["lesion_labels"] == [] and index["layers"] == links["layers"]
    assert index["slices"][0]["lesion_area_mm2"] is None and index["slices"][0]["lesion_score"] is None
    for path in (links["url"], links["template"].format(k=0, layer="image")):
        assert keyed.get(path, headers=_key("alice")).status_code == 200
        assert keyed.get(path, headers=_key("reader")).status_code == 200
        assert_problem(keyed.get(path, headers=_key("bob")), 404, mine["id"])
        assert_problem(keyed.get(path), 401)
    store: Store = keyed.app.state.service.store
    assert store.delete_before(utcnow() + timedelta(seconds=1)) == 1
    assert store.overlay(mine["id"], SERIES) is None
    assert_problem(keyed.get(links["url"], headers=_key("reader")), 404)
