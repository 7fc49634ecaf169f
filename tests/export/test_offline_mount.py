"""``mount_offline``: isolation headers and media types at /offline/, a clear 503 without a build."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from chestlens.export.offline import mount_offline

FILES = {
    "index.html": "text/html",
    "vendor/ort-wasm-simd-threaded.wasm": "application/wasm",
    "vendor/ort.wasm.min.mjs": "text/javascript",
    "models/m.onnx": "application/octet-stream",
    "manifest.webmanifest": "application/manifest+json",
}


def test_headers_and_media_types(tmp_path):
    for name in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    app = FastAPI()
    assert mount_offline(app, tmp_path)
    client = TestClient(app)
    assert client.get("/offline", follow_redirects=False).headers["location"] == "/offline/"
    for path, media in [("", "text/html"), *FILES.items()]:
        response = client.get(f"/offline/{path}" if path != "index.html" else "/offline/index.html")
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media), (path, response.headers["content-type"])
        assert response.headers["cross-origin-opener-policy"] == "same-origin"
        assert response.headers["cross-origin-embedder-policy"] == "require-corp"


def test_missing_build_explains(tmp_path):
    app = FastAPI()
    assert not mount_offline(app, tmp_path / "nothing")
    response = TestClient(app).get("/offline/")
    assert response.status_code == 503
    assert "chestlens export web" in response.text
