"""Helpers for the web service tests (imported by the test modules of this folder)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chestlens.serve.app import create_app
from chestlens.serve.settings import ServeSettings

READY_TIMEOUT_S = 120.0


def require_or_skip(env: str, reason: str) -> None:
    """Fail when ``env`` is ``1`` (CI), else skip with ``reason``."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{reason} ({env}=1 makes this a failure)")
    pytest.skip(reason)


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the service did not become ready"
        time.sleep(0.1)


@contextmanager
def serving(settings: ServeSettings) -> Iterator[TestClient]:
    """A ready in-process client of ``create_app(settings)`` (start-up and shutdown run as in uvicorn)."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def upload(client: TestClient, data: bytes, name: str = "image", field: str = "file"):
    """POST one file to ``/api/v1/screenings``."""
    return client.post("/api/v1/screenings", files={field: (name, data, "application/octet-stream")})


def assert_problem(response, status: int, detail_pattern: str = "") -> dict:
    """The response is a problem+json of ``status`` whose detail matches ``detail_pattern``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["detail"] and body["type"].startswith("/problems/")
    assert re.search(detail_pattern, body["detail"]), body["detail"]
    return body


def p001_slices(source_dir, first: int, count: int) -> list[Path]:
    """``count`` contiguous slices of COVID-CT-MD P001 from the ``first`` (by Instance Number)."""
    import pydicom

    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    files = sorted(
        (p for p in folder.iterdir() if p.is_file()),
        key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber),
    )
    return files[first : first + count]


def wait_job(client, url: str, timeout_s: float = 120.0, headers: dict[str, str] | None = None) -> dict:
    """Poll the job at ``url`` until it is ``done`` or ``failed`` (or ``timeout_s`` has passed); its JSON."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(url, headers=headers).json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)
