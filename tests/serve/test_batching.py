"""Micro-batching across concurrent requests, and the bounded queue's 503 with Retry-After."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_helpers import assert_problem, serving, upload

from chestlens.serve.settings import ServeSettings

pytestmark = [pytest.mark.inference, pytest.mark.shared_data]
CLIENTS = 8


def _post_all(service, images: list[bytes]):
    with ThreadPoolExecutor(len(images)) as pool:
        return list(pool.map(lambda data: upload(service, data), images))


def test_concurrent_requests_share_batches(tmp_path, radiographs):
    images = [p.read_bytes() for p in radiographs(CLIENTS)]
    settings = ServeSettings(data_dir=tmp_path, device="cpu", max_batch=CLIENTS, batch_wait_ms=50)
    with serving(settings) as service:
        engine = service.app.state.service.engine
        responses = _post_all(service, images)
        assert [r.status_code for r in responses] == [200] * CLIENTS
        assert engine.images == CLIENTS and engine.batches < CLIENTS
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == CLIENTS  # every request got its own result


def test_full_queue_answers_503_with_retry_after(tmp_path, radiographs):
    images = [p.read_bytes() for p in radiographs(CLIENTS)]
    settings = ServeSettings(data_dir=tmp_path, device="cpu", max_batch=1, queue_size=1, retry_after_s=3)
    with serving(settings) as service:
        responses = _post_all(service, images)
        codes = sorted(r.status_code for r in responses)
        assert set(codes) == {200, 503}, codes
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["retry-after"] == "3"
        assert_problem(busy, 503, "queue is full")
        assert upload(service, images[0]).status_code == 200  # still serving
