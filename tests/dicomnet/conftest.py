"""Fixtures for ``chestlens listen``: one loaded Screener per session, listeners on loopback ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from dicomnet_helpers import ENV_DICOM, ENV_PORT, ENV_URL, orthanc_unavailable

from chestlens.dicomnet.scp import Listener
from chestlens.dicomnet.settings import Destination, ListenSettings
from chestlens.pipeline.screener import Screener


@pytest.fixture(scope="session")
def screener() -> Screener:
    """The default models on CPU, loaded once (about 40 s on a busy 2-core machine)."""
    return Screener(device="cpu")


@pytest.fixture
def start_listener(screener: Screener) -> Iterator[Callable[..., Listener]]:
    """Factory: a started listener on a free loopback port; every one is stopped after the test."""
    started: list[Listener] = []

    def start(state_dir: Path, destinations: tuple[Destination, ...] = (), **options: object) -> Listener:
        defaults = {"port": 0, "settle_s": 0.5, "retry_base_s": 0.2, "retry_max_s": 1.0}
        settings = ListenSettings(state_dir=state_dir, destinations=destinations, **(defaults | options))  # type: ignore[arg-type]
        listener = Listener(settings, screener)
        listener.start()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


@pytest.fixture
def orthanc() -> httpx.Client:
    """REST client of the test Orthanc."""
    missing = [name for name in (ENV_URL, ENV_DICOM, ENV_PORT) if not os.environ.get(name)]
    if missing:
        orthanc_unavailable(f"no Orthanc configured ({', '.join(missing)} unset)")
    # Orthanc closes idle keep-alive connections; a fresh connection per request avoids reusing one
    client = httpx.Client(base_url=os.environ[ENV_URL], timeout=120, headers={"Connection": "close"})
    try:
        client.get("/system").raise_for_status()
    except httpx.HTTPError as error:
        orthanc_unavailable(f"Orthanc at {os.environ[ENV_URL]} does not answer ({error})")
    yield client
    client.close()
