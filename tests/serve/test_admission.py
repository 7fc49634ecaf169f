"""An overloaded server refuses an upload before decoding it, and decodes a bounded number at once."""

from __future__ import annotations

import pytest
from serve_helpers import assert_problem, serving, upload

from chestlens.serve import api
from chestlens.serve.settings import ServeSettings

pytestmark = pytest.mark.inference


def test_a_full_server_answers_503_without_decoding(tmp_path, pip_dicom, monkeypatch):
    settings = ServeSettings(data_dir=tmp_path / "serve", device="cpu", queue_size=1, decode_workers=1)
    data = pip_dicom("RG1_UNCR.dcm").read_bytes()
    decoded: list[str] = []
    real_decode = api.decode_image

    def counting_decode(*args):
        decoded.append(args[1])
        return real_decode(*args)

    monkeypatch.setattr(api, "decode_image", counting_decode)
    with serving(settings) as client:
        service = client.app.state.service
        assert service.decode_slots._value == 1  # decode_workers
        with service.engine.admit():  # the only place is taken
            response = upload(client, data)
            assert_problem(response, 503, "queue is full")
            assert response.headers["Retry-After"] == str(settings.retry_after_s)
            assert decoded == []  # refused before any decoding
        assert service.engine.admitted == 0
        assert upload(client, data).status_code == 200 and len(decoded) == 1
        assert service.engine.admitted == 0  # the place is given back after the result


def test_a_series_that_would_overfill_the_spool_is_refused_before_it_is_written(tmp_path, pip_dicom):
    settings = ServeSettings(data_dir=tmp_path / "serve", device="cpu", max_spool_bytes=100_000)
    data = pip_dicom("CT_small.dcm").read_bytes()  # about 39 KB: three of them are over the cap
    files = [("file", (f"slice{i}.dcm", data, "application/dicom")) for i in range(3)]
    with serving(settings) as client:
        response = client.post("/api/v1/screenings", files=files)
        assert_problem(response, 503, "spool is full")
        assert response.headers["Retry-After"] == str(settings.retry_after_s)
        spool = settings.data_dir / "spool"
        assert not spool.exists() or not any(spool.iterdir())  # nothing was written
        two = client.post("/api/v1/screenings", files=files[:2])
        assert two.status_code == 202, two.text  # a series that fits is accepted as a job
