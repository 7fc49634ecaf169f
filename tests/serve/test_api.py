"""The API on real images: radiographs from the shared data and the DICOM files that ship with pip."""

from __future__ import annotations

import csv
import io

import pytest
from PIL import Image
from serve_helpers import upload

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.pipeline.schema import ScreeningResult

pytestmark = [pytest.mark.inference, pytest.mark.shared_data]


def test_health_ready_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok", "models": []}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and "xray3-screener" in ready["models"]
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/screenings" in schema["paths"] and "ScreeningResult" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 404  # no CDN-backed docs page


@pytest.mark.parametrize("index", [0, 1])
def test_radiograph_answers_synchronously_with_the_pipeline_schema(client, radiographs, index):
    path = radiographs(2)[index]  # a Kermany JPEG, then an NIH PNG
    response = upload(client, path.read_bytes(), path.name)
    assert response.status_code == 200, response.text
    body = response.json()
    result = ScreeningResult.model_validate(body["result"])
    assert result.gate.accepted and result.classification is not None
    assert abs(sum(result.classification.probabilities.values()) - 1) < 1e-6
    assert "What the COVID-19 output means" in result.classification.meaning  # from the bundle
    assert result.disclaimer == RESEARCH_USE_DISCLAIMER
    assert result.input.source == f"upload-{body['id']}"  # the server's name, never the client's
    assert path.name not in response.text
    assert {"image", "heatmap", "lungs", "summary"} <= set(body["overlays"])
    again = client.get(f"/api/v1/screenings/{body['id']}").json()
    assert again["result"] == body["result"]
    base = Image.open(io.BytesIO(client.get(body["overlays"]["image"]).content))
    heat = Image.open(io.BytesIO(client.get(body["overlays"]["heatmap"]).content))
    assert heat.mode == "RGBA" and heat.size == base.size


def test_pip_dicom_radiograph_and_rejected_leg(client, pip_dicom):
    chest = upload(client, pip_dicom("RG1_UNCR.dcm").read_bytes(), "RG1_UNCR.dcm").json()
    assert chest["status"] == "screened" and chest["result"]["input"]["format"] == "dicom"
    leg = upload(client, pip_dicom("RG3_UNCR.dcm").read_bytes()).json()
    assert leg["status"] == "rejected"
    assert leg["result"]["classification"] is None and leg["result"]["gate"]["reason"]
    ct = upload(client, pip_dicom("CT_small.dcm").read_bytes()).json()
    assert ct["result"]["gate"]["image_type"] == "chest_ct"


def test_worklist_and_csv(client, pip_dicom):
    first = upload(client, pip_dicom("RG1_UNCR.dcm").read_bytes()).json()
    items = client.get("/api/v1/screenings", params={"limit": 5}).json()
    assert items[0]["id"] == first["id"] and items[0]["url"].endswith(first["id"])
    assert len(items) <= 5
    response = client.get("/api/v1/screenings.csv")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert any(row["source"] == f"upload-{first['id']}" and row["top_label"] for row in rows)


def test_models_with_cards(client):
    models = {m["name"]: m for m in client.get("/api/v1/models").json()}
    assert set(models) == {"xray3-screener", "lungs-segmenter", "lesions-ct-segmenter"}
    assert models["xray3-screener"]["operating_points"] and "#" in models["xray3-screener"]["model_card"]


def test_page_is_self_contained(client):
    page = client.get("/").text
    assert RESEARCH_USE_DISCLAIMER in page and 'name="viewport"' in page
    for asset in ("/static/app.js", "/static/app.css"):
        assert asset in page and client.get(asset).status_code == 200
    assert "http://" not in page and "https://" not in page  # no CDN
    assert "https://" not in client.get("/static/app.js").text
    headers = client.get("/").headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert (
        "access-control-allow-origin" not in client.get("/", headers={"Origin": "http://x.example"}).headers
    )


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith tab"}).headers["x-request-id"]
    assert len(made) == 32


def test_layers_are_drawn_on_request_as_the_pipeline_draws_them(client, pip_dicom):
    import numpy as np

    from chestlens.pipeline.overlay import overlay_image
    from chestlens.serve.layers import NOT_DRAWN

    data = pip_dicom("RG1_UNCR.dcm").read_bytes()
    body = upload(client, data).json()
    store = client.app.state.service.store
    assert store.overlay(body["id"], "summary") == NOT_DRAWN  # nothing drawn until asked for
    summary = client.get(body["overlays"]["summary"]).content
    assert store.overlay(body["id"], "summary") == summary  # kept after the first request
    screener = client.app.state.service.engine.screener
    direct = overlay_image(screener.screen(data, name=f"upload-{body['id']}"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(summary)).convert("RGB")), np.asarray(direct))
