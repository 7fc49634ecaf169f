"""Drive the offline screener in headless Chromium (tests and ``bench/browser_latency.py``).

The system Chromium (Debian ``chromium``, or ``$CHESTLENS_BROWSER``) is driven with Python Playwright;
Playwright's own browser download (``playwright install``) is never used.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BROWSER_ENV = "CHESTLENS_BROWSER"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: CSS selectors for the page's states (web/app.js); selectors, not JavaScript predicates, because the
#: page's Content-Security-Policy forbids the eval that Playwright's ``wait_for_function`` needs.
READY = '#status[data-state="ready"]'
INSTALLED = 'body[data-offline="installed"]'
SCREENED = '#status[data-state="done"], #status[data-state="rejected"], #status[data-state="error"]'


def chromium_path() -> str:
    """``$CHESTLENS_BROWSER``, else ``chromium`` on the PATH, else ``/usr/bin/chromium``."""
    return os.environ.get(BROWSER_ENV) or shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """An ASGI ``app`` served by uvicorn on a free loopback port in a thread (a context manager);
    :meth:`stop` ends it, which cuts the page's network."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def plain_static_server(folder: Path) -> Iterator[str]:
    """``folder`` served by Python's ``http.server`` (no COOP/COEP headers: any static host) on a free
    loopback port, in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def open_browser(chromium: Any, profile: Path) -> Any:
    """A headless Chromium context with its profile on disk (``chromium`` is Playwright's
    ``playwright.chromium``): closing it and opening another on the same profile is a browser restart,
    with the service worker and its cache kept."""
    return chromium.launch_persistent_context(
        str(profile), executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS)
    )


def wait_for(page: Any, selector: str, timeout_ms: int = 120_000) -> None:
    """Wait until ``selector`` (:data:`READY`, :data:`INSTALLED`, :data:`SCREENED`) matches."""
    page.wait_for_selector(selector, state="attached", timeout=timeout_ms)


def screen_file(page: Any, image: Path, timeout_ms: int = 120_000) -> dict[str, Any]:
    """Pick ``image`` in the page's file input and return ``window.chestlens.result`` when done."""
    page.evaluate("window.chestlens.result = null; document.getElementById('status').dataset.state = 'busy'")
    page.set_input_files("#file", str(image))
    wait_for(page, SCREENED, timeout_ms)
    return page.evaluate("window.chestlens.result")
