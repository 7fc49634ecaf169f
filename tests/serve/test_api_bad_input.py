"""Every bad input answers 4xx with a problem+json body naming the reason; never 500, and the server
keeps serving. The image cases are the foundation's list (tests/io/test_bad_input.py), sent as uploads."""

from __future__ import annotations

import io
import zipfile

import pytest
from serve_helpers import assert_problem, serving, upload
from tests.io.conftest import bomb_png, make_dicom  # noqa: F401  (fixtures the foundation's builders use)
from tests.io.test_bad_input import BAD_INPUTS

from chestlens.serve.settings import ServeSettings

pytestmark = pytest.mark.inference

#: Foundation cases that are about paths, not bytes: an upload cannot be missing or a folder.
PATH_ONLY = {"missing file", "folder without DICOM"}
#: Cases refused before decoding: bytes of no supported format are an unsupported media type.
UNSUPPORTED = {"text renamed png"}


@pytest.mark.parametrize("case", sorted(set(BAD_INPUTS) - PATH_ONLY))
def test_foundation_bad_inputs_answer_4xx(client, case, tmp_path, pip_dicom, make_dicom, bomb_png):  # noqa: F811
    build, reason = BAD_INPUTS[case]
    data = build(tmp_path, pip_dicom, make_dicom, bomb_png).read_bytes()
    status = 415 if case in UNSUPPORTED else 422
    if case == "empty file":
        reason = "no bytes"
    body = assert_problem(upload(client, data, "scan.dcm"), status, reason)
    assert "scan.dcm" not in body["detail"]  # the client's file name is never echoed or stored


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_request_shape_errors(client, pip_dicom):
    data = pip_dicom("RG1_UNCR.dcm").read_bytes()
    assert_problem(upload(client, data, field="image"), 422, r"body\.file: Field required")
    assert_problem(client.post("/api/v1/screenings"), 415, "multipart/form-data")
    assert_problem(client.post("/api/v1/screenings", json={"file": "x"}), 415, "application/json")
    assert_problem(
        client.post("/api/v1/screenings", content=data, headers={"Content-Type": "application/dicom"}),
        415,
        "multipart",
    )
    assert_problem(
        client.post("/api/v1/screenings", files={"other": ("a", b"x")}, data={"note": "y"}), 422, "file"
    )
    assert_problem(client.get("/api/v1/screenings/" + "0" * 32), 404, "no screening")
    assert_problem(client.get("/api/v1/screenings/not-an-id"), 422, "screening_id")
    assert_problem(client.get("/api/v1/jobs/" + "f" * 32), 404, "no job")
    assert_problem(client.get("/api/v1/screenings", params={"limit": "many"}), 422, "limit")
    assert_problem(client.delete("/api/v1/screenings"), 405, "Method Not Allowed")
    assert_problem(client.get("/nowhere"), 404, "Not Found")


def test_series_shape_errors(client, pip_dicom):
    assert_problem(upload(client, b"PK\x03\x04 not really a zip", "s.zip"), 422, "zip cannot be read")
    assert_problem(upload(client, _zip({}), "s.zip"), 422, "no files")
    two = [("file", ("a", pip_dicom("CT_small.dcm").read_bytes())), ("file", ("b", b"plain text" * 20))]
    assert_problem(client.post("/api/v1/screenings", files=two), 415, "part 2: not a recognised image format")


def test_zipped_non_dicom_fails_its_job_with_the_reason(client):
    response = upload(client, _zip({"notes.txt": b"hello " * 50, "../../evil.txt": b"x"}), "s.zip")
    assert response.status_code == 202
    job = client.get(response.headers["location"]).json()
    for _ in range(200):
        if job["status"] in ("done", "failed"):
            break
        job = client.get(response.headers["location"]).json()
    assert job["status"] == "failed" and "DICOM" in job["error"]


def test_limits_answer_413_and_422(tmp_path, pip_dicom):
    data = pip_dicom("RG1_UNCR.dcm").read_bytes()
    settings = ServeSettings(
        data_dir=tmp_path, device="cpu", max_upload_bytes=len(data) // 2, max_pixels=1000
    )
    with serving(settings) as small:
        assert_problem(upload(small, data), 413, "exceeds the limit")

        def chunks():
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
            yield data
            yield b"\r\n--b--\r\n"

        chunked = small.post(
            "/api/v1/screenings",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert_problem(chunked, 413, "exceeds the limit")
        assert_problem(
            upload(small, pip_dicom("CT_small.dcm").read_bytes()), 422, "exceeds the limit of 1,000"
        )
        assert small.get("/healthz").status_code == 200


def test_api_keys_and_cors(tmp_path, pip_dicom):
    settings = ServeSettings(
        data_dir=tmp_path, device="cpu", api_keys=frozenset({"s3cret"}), cors_origins=("https://ok.example",)
    )
    with serving(settings) as keyed:
        assert_problem(keyed.get("/api/v1/screenings"), 401, "X-API-Key")
        assert_problem(keyed.get("/api/v1/screenings", headers={"X-API-Key": "wrong"}), 401, "X-API-Key")
        assert keyed.get("/api/v1/screenings", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert keyed.get("/healthz").status_code == 200 and keyed.get("/").status_code == 200
        allowed = keyed.get("/healthz", headers={"Origin": "https://ok.example"}).headers
        assert allowed["access-control-allow-origin"] == "https://ok.example"
        preflight = keyed.options(
            "/api/v1/screenings",
            headers={"Origin": "https://ok.example", "Access-Control-Request-Method": "POST"},
        )
        assert (
            preflight.status_code == 200 and "X-API-Key" in preflight.headers["access-control-allow-headers"]
        )
        other = keyed.get("/healthz", headers={"Origin": "https://evil.example"}).headers
        assert "access-control-allow-origin" not in other


def test_still_serving_after_bad_input(client, pip_dicom):
    assert client.get("/readyz").status_code == 200
    assert upload(client, pip_dicom("RG1_UNCR.dcm").read_bytes()).status_code == 200


def test_a_dicom_upload_cut_inside_its_preamble_is_reported_as_truncated_dicom(tmp_path, pip_dicom):
    """The client's ``.dcm`` suffix (and only that) is a hint for reading: a DICOM cut at 100 bytes is a
    truncated DICOM, not the TIFF header its first bytes also form; the result's name stays the server's."""
    cut = pip_dicom("RG1_UNCR.dcm").read_bytes()[:100]
    with serving(ServeSettings(data_dir=tmp_path, device="cpu")) as client:
        answer = upload(client, cut, "patient-name-here.dcm")
        problem = assert_problem(answer, 422, "truncated DICOM")
    assert "patient-name-here" not in str(problem)
