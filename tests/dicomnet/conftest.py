"""Fixtures for ``chestlens listen``: one loaded Screener per session, listeners on loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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
