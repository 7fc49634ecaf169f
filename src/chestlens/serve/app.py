"""The FastAPI application factory: ``create_app(settings)``.

Mounted: the API (:mod:`chestlens.serve.api`), the page at ``/`` and its assets at ``/static``
(:mod:`chestlens.serve.page`; nothing comes from a CDN), the OpenAPI schema at ``/api/v1/openapi.json``.
With credentials configured (API keys, a bearer token key) the API routers (``/api/v1``, DICOMweb)
declare their security schemes and 401/403 responses; every operation checks its role
(:mod:`chestlens.serve.security`). Every request to them is recorded in the access log
(:mod:`chestlens.serve.access_log`); the body timeout and size limit are the
:class:`~chestlens.serve.middleware.GuardMiddleware`'s. No debug mode, no interactive docs (they would
load scripts from a CDN), CORS only for the origins configured. Other parts add their mounts to the
returned app (e.g. the offline page at ``/offline/``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from chestlens import RESEARCH_USE_DISCLAIMER, __version__
from chestlens.export.offline import mount_offline
from chestlens.serve import api, page, stow
from chestlens.serve.access_log import AccessLog
from chestlens.serve.middleware import GuardMiddleware, RequestRefusedError
from chestlens.serve.problems import install_problem_handlers, problem_response
from chestlens.serve.security import AUTH_RESPONSES, Credentials, security_dependencies
from chestlens.serve.service import Service
from chestlens.serve.settings import ServeSettings

log = logging.getLogger("chestlens.serve")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: Service = app.state.service
    await service.start()
    app.state.access_log.secure()  # the data folder exists now
    log.info(_access_mode(app.state.credentials), extra={"event": "access"})
    try:
        yield
    finally:
        await service.stop()


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """A new app for ``settings`` (defaults: bundled models, SQLite in ``./chestlens-serve``).

    The models load in the background after start-up: ``/healthz`` answers at once, ``/readyz`` and the
    screening routes answer 503 until the models are loaded. A token key file that cannot be used raises
    a one-line :class:`~chestlens.errors.ChestlensInputError`.
    """
    settings = settings or ServeSettings()
    credentials = Credentials.from_settings(settings)
    app = FastAPI(
        title="chestlens",
        version=__version__,
        description=f"Chest X-ray and CT screening service. {RESEARCH_USE_DISCLAIMER}",
        debug=False,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by api.router at /api/v1/openapi.json, behind the credentials when set
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.credentials = credentials
    app.state.service = Service(settings)
    app.state.access_log = AccessLog(settings.data_dir)
    install_problem_handlers(app)
    app.add_exception_handler(RequestRefusedError, _refused)
    # without credentials the API is open (everyone is admin) and its OpenAPI document says so
    dependencies = security_dependencies(credentials)
    responses = AUTH_RESPONSES if credentials.configured else {}
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
            allow_headers=["X-API-Key", "Authorization", "X-Request-ID"],
        )
    app.add_middleware(
        GuardMiddleware,
        max_body_bytes=settings.max_upload_bytes,
        body_timeout_s=settings.body_timeout_s,
        access_log=app.state.access_log,
    )
    return app


def _access_mode(credentials: Credentials) -> str:
    """How requests are authenticated, in one line (numbers and kinds only, never a secret)."""
    if not credentials.configured:
        return "access control: none configured, the API is open and every request acts as admin"
    kinds = [f"{len(credentials.keys)} API key(s)"] if credentials.keys else []
    kinds += ["bearer tokens"] if credentials.tokens is not None else []
    return f"access control: {' and '.join(kinds)}; access log in access.jsonl"


async def _refused(request: Request, error: Exception) -> JSONResponse:
    """A body over a limit, seen by a route that reads it (the middleware sends this problem anyway)."""
    assert isinstance(error, RequestRefusedError)
    return problem_response(request, *error.problem)


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (``--workers N``): settings from the environment."""
    return create_app(ServeSettings.from_env())
