"""The FastAPI application factory: ``create_app(settings)``.

Mounted: the API (:mod:`chestlens.serve.api`), the page at ``/`` and its assets at ``/static``
(:mod:`chestlens.serve.page`; nothing comes from a CDN), the OpenAPI schema at ``/api/v1/openapi.json``.
With API keys configured the API routers (``/api/v1``, DICOMweb) carry the key dependency
(:mod:`chestlens.serve.security`). No debug mode, no interactive docs (they would load scripts from a
CDN), CORS only for the origins configured. Other parts add their mounts to the returned app (e.g. the
offline page at ``/offline/``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from chestlens import RESEARCH_USE_DISCLAIMER, __version__
from chestlens.export.offline import mount_offline
from chestlens.serve import api, page, stow
from chestlens.serve.middleware import GuardMiddleware
from chestlens.serve.problems import install_problem_handlers
from chestlens.serve.security import UNAUTHORIZED, require_api_key
from chestlens.serve.service import Service
from chestlens.serve.settings import ServeSettings


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: Service = app.state.service
    await service.start()
    try:
        yield
    finally:
        await service.stop()


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """A new app for ``settings`` (defaults: bundled models, SQLite in ``./chestlens-serve``).

    The models load in the background after start-up: ``/healthz`` answers at once, ``/readyz`` and the
    screening routes answer 503 until the models are loaded.
    """
    settings = settings or ServeSettings()
    app = FastAPI(
        title="chestlens",
        version=__version__,
        description=f"Chest X-ray and CT screening service. {RESEARCH_USE_DISCLAIMER}",
        debug=False,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by api.router at /api/v1/openapi.json, behind the API key when set
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.service = Service(settings)
    install_problem_handlers(app)
    keyed = bool(settings.api_keys)  # without keys the API is open and its OpenAPI document says so
    dependencies, responses = ([Depends(require_api_key)], UNAUTHORIZED) if keyed else ([], {})
    app.include_router(api.health_router)
    app.include_router(api.router, dependencies=dependencies, responses=responses)
    # DICOMweb STOW-RS at /dicomweb/studies
    app.include_router(stow.router, dependencies=dependencies, responses=responses)
    page.mount_page(app)
    mount_offline(app)  # the offline screener (chestlens export web) at /offline/
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "X-Request-ID"],
        )
    app.add_middleware(GuardMiddleware, max_body_bytes=settings.max_upload_bytes)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (``--workers N``): settings from the environment."""
    return create_app(ServeSettings.from_env())
