"""Serve a ``chestlens export web`` build at ``/offline/`` of the FastAPI app (``chestlens serve``).

Every response of the mount carries ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp`` (the page is then cross-origin isolated and
onnxruntime-web can use threads), and ``.wasm``, ``.mjs``, ``.onnx`` and ``.webmanifest`` files get
their proper media types. Without a build, ``/offline/`` answers 503 with how to make one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WEB_DIR_ENV = "CHESTLENS_WEB_DIR"


def default_web_dir() -> Path:
    """Where ``chestlens export web`` builds and ``chestlens serve`` looks: ``$CHESTLENS_WEB_DIR``,
    else ``$XDG_CACHE_HOME/chestlens/web`` (``~/.cache``)."""
    explicit = os.environ.get(WEB_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chestlens" / "web"


MOUNT_PATH = "/offline"
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MEDIA_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".onnx": "application/octet-stream",
    ".webmanifest": "application/manifest+json",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}


def missing_message(folder: Path) -> str:
    """What to do when the web build is absent."""
    return (
        f"The offline screener is not built ({folder} has no index.html). Build it with "
        f"`chestlens export web` (default folder) or `chestlens export web DIR` and set {WEB_DIR_ENV}=DIR."
    )


def mount_offline(app: Any, folder: Path | None = None) -> bool:
    """Mount the web build ``folder`` (default :func:`chestlens.export.web.default_web_dir`) at
    ``/offline/``. Returns True when a build was mounted; otherwise ``/offline/`` explains how to
    build one (HTTP 503) and a warning is logged."""
    from starlette.responses import PlainTextResponse, RedirectResponse
    from starlette.staticfiles import StaticFiles

    folder = folder or default_web_dir()

    @app.get(MOUNT_PATH, include_in_schema=False)
    def _offline_slash() -> RedirectResponse:
        return RedirectResponse(f"{MOUNT_PATH}/")

    if not (folder / "index.html").is_file():
        log.warning(missing_message(folder))

        @app.get(MOUNT_PATH + "/{path:path}", include_in_schema=False)
        def _offline_missing(path: str) -> PlainTextResponse:
            return PlainTextResponse(missing_message(folder), status_code=503)

        return False

    class IsolatedStaticFiles(StaticFiles):
        """Static files with the isolation headers and explicit media types."""

        def file_response(self, full_path: Any, *args: Any, **kwargs: Any) -> Any:
            response = super().file_response(full_path, *args, **kwargs)
            media = MEDIA_TYPES.get(Path(str(full_path)).suffix)
            if media is not None:
                response.headers["content-type"] = media
                response.media_type = media
            if Path(str(full_path)).name == "sw.js":
                response.headers["cache-control"] = "no-cache"
            response.headers.update(ISOLATION_HEADERS)
            return response

    app.mount(MOUNT_PATH, IsolatedStaticFiles(directory=folder, html=True), name="offline")
    return True
