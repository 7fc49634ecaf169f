"""API keys are a FastAPI security dependency: declared in the OpenAPI document, enforced per operation.

Model-less services (``models=()``): the key is checked before anything needs a model. The 401s of a
service with real models are in ``test_api_bad_input.py::test_api_keys_and_cors``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from serve_helpers import assert_problem, wait_ready

from chestlens.serve.app import create_app
from chestlens.serve.settings import ServeSettings

KEY = "s3cret"
SCHEME = {"APIKey": []}


@contextmanager
def _service(tmp_path, keys: frozenset[str]) -> Iterator[TestClient]:
    settings = ServeSettings(data_dir=tmp_path, device="cpu", models=(), api_keys=keys)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def _operations(schema: dict) -> dict[str, dict]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }


def test_openapi_declares_the_key_when_keys_are_set(tmp_path):
    with _service(tmp_path, frozenset({KEY, "other"})) as keyed:
        assert_problem(keyed.get("/api/v1/openapi.json"), 401, "X-API-Key")  # the schema is behind it too
        schema = keyed.get("/api/v1/openapi.json", headers={"X-API-Key": KEY}).json()
    scheme = schema["components"]["securitySchemes"]["APIKey"]
    assert scheme["type"] == "apiKey" and scheme["in"] == "header" and scheme["name"] == "X-API-Key"
    operations = _operations(schema)
    keyed = ("/api/v1/", "/dicomweb/")
    api = {name: op for name, op in operations.items() if name.split()[1].startswith(keyed)}
    assert len(api) >= 8 and {"POST /api/v1/screenings", "POST /dicomweb/studies"} <= set(api)
    for name, operation in api.items():
        assert operation.get("security") == [SCHEME], name
        assert "401" in operation["responses"], name
    for name in ("GET /healthz", "GET /readyz"):
        assert "security" not in operations[name], name


def test_no_keys_no_scheme_and_an_open_api(tmp_path):
    with _service(tmp_path, frozenset()) as open_:
        response = open_.get("/api/v1/openapi.json")
        assert response.status_code == 200
        schema = response.json()
        assert open_.get("/api/v1/screenings").status_code == 200
    assert "securitySchemes" not in schema.get("components", {})
    assert all("security" not in operation for operation in _operations(schema).values())


def test_401_is_the_problem_document_with_request_id_and_headers(tmp_path):
    with _service(tmp_path, frozenset({KEY})) as keyed:
        response = keyed.get("/api/v1/screenings", headers={"X-Request-ID": "abc-123"})
        body = assert_problem(response, 401, "^send a valid X-API-Key header$")
        assert body == {
            "type": "/problems/unauthorized",
            "title": "API key required",
            "status": 401,
            "detail": "send a valid X-API-Key header",
            "request_id": "abc-123",
        }
        assert response.headers["x-request-id"] == "abc-123"
        assert response.headers["x-content-type-options"] == "nosniff"
        for given in (b"", b"s3cre", b"s3cret ", "s\xe9cret".encode("latin-1"), b"\xff" * 6):
            assert_problem(keyed.get("/api/v1/jobs/" + "0" * 32, headers={"X-API-Key": given}), 401)
        assert_problem(keyed.get("/api/v1/jobs/" + "0" * 32, headers={"X-API-Key": KEY}), 404)
        assert keyed.get("/healthz").status_code == 200 and keyed.get("/readyz").status_code == 200


def test_an_upload_without_a_key_is_refused_unread(tmp_path):
    sent = {"chunks": 0}

    def body() -> Iterator[bytes]:
        for _ in range(64):
            sent["chunks"] += 1
            yield b"--b\r\nnot a well-formed multipart body " * 1024

    with _service(tmp_path, frozenset({KEY})) as keyed:
        response = keyed.post(
            "/api/v1/screenings", content=body(), headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert_problem(response, 401, "X-API-Key")  # not the 400 of the malformed body: it was not read
        assert sent["chunks"] <= 1
        keyed_response = keyed.post(
            "/api/v1/screenings",
            content=b"--b--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=b", "X-API-Key": KEY},
        )
        assert keyed_response.status_code != 401


def test_dicomweb_stow_needs_the_key_too(tmp_path):
    """docs/pacs.md: the API key and body size limits of the service apply to STOW-RS."""
    headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'}
    with _service(tmp_path, frozenset({KEY})) as keyed:
        for path in ("/dicomweb/studies", "/dicomweb/studies/1.2.3"):
            assert_problem(keyed.post(path, content=b"--b--\r\n", headers=headers), 401, "X-API-Key")
            keyed_response = keyed.post(path, content=b"--b--\r\n", headers={**headers, "X-API-Key": KEY})
            assert keyed_response.status_code != 401
