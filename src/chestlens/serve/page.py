"""The browser page at ``/`` and its assets at ``/static`` (all served by chestlens, no CDN)."""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from chestlens import RESEARCH_USE_DISCLAIMER, __version__

STATIC = Path(__file__).resolve().parent / "static"


def index_html() -> str:
    """``static/index.html`` with the version and the research-use disclaimer filled in."""
    template = (STATIC / "index.html").read_text(encoding="utf-8")
    return template.replace("{{version}}", escape(__version__)).replace(
        "{{disclaimer}}", escape(RESEARCH_USE_DISCLAIMER)
    )


def mount_page(app: FastAPI) -> None:
    """Add ``GET /`` (the page) and ``/static`` (its CSS and JavaScript)."""
    page = index_html()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
