"""Errors as RFC 9457 problem documents (``application/problem+json``).

Every refusal names its reason in ``detail``; bad input is always 4xx, never 500, and the server keeps
serving. ``type`` is a relative URI under ``/problems/`` naming the kind of error. Unexpected errors are
logged by :func:`log_failure`: type and stack, never the message (it could quote client data).
"""

from __future__ import annotations

import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from chestlens.errors import ChestlensInputError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("chestlens.serve")


class Problem(BaseModel):
    """The body of every error response (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None


class ProblemError(Exception):
    """Raise inside a route to answer with a problem document.

    Args:
        status: HTTP status (4xx or 503).
        kind: last part of the ``type`` URI, e.g. ``"unsupported-media-type"``.
        title: short, fixed summary of the kind.
        detail: the reason for this request, in one line.
        headers: extra response headers (e.g. ``Retry-After``).
    """

    def __init__(
        self, status: int, kind: str, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers = headers or {}


def busy(what: str, retry_after_s: int) -> ProblemError:
    """503 "Server busy" with ``Retry-After``: ``what`` (the screening queue, the series spool) is full."""
    return ProblemError(
        503,
        "busy",
        "Server busy",
        f"{what} is full; retry after the given seconds",
        {"Retry-After": str(retry_after_s)},
    )


def log_failure(what: str, error: BaseException, **extra: object) -> None:
    """Log an unexpected error by its type and stack only, never its message.

    Exception messages can quote client data (zip member names that hold patient ids, DICOM element
    values), so no message reaches the log; the stack (file, line, code) is enough to find the bug.
    """
    stack = "".join(traceback.format_tb(error.__traceback__)).rstrip()
    log.error(f"{what}: {type(error).__name__} (message withheld)\n{stack}", extra=extra)


def problem_response(
    request: Request | None,
    status: int,
    kind: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response; the request id (set by the middleware) is echoed when known."""
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    body = Problem(type=f"/problems/{kind}", title=title, status=status, detail=detail, request_id=request_id)
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


def _validation_detail(error: RequestValidationError) -> str:
    """One line naming each offending field: ``body.file: Field required``."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error the app can raise to a problem document."""

    @app.exception_handler(ProblemError)
    async def _api_problem(request: Request, error: ProblemError) -> JSONResponse:
        return problem_response(request, error.status, error.kind, error.title, error.detail, error.headers)

    @app.exception_handler(ChestlensInputError)
    async def _bad_input(request: Request, error: ChestlensInputError) -> JSONResponse:
        return problem_response(request, 422, "unreadable-image", "The image cannot be used", error.reason)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and not content_type.startswith("multipart/form-data"):
            return problem_response(
                request,
                415,
                "unsupported-media-type",
                "Unsupported media type",
                f"the body must be multipart/form-data with a 'file' field, not {content_type or 'empty'}",
            )
        return problem_response(
            request, 422, "invalid-request", "The request is not valid", _validation_detail(error)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        return problem_response(
            request, error.status_code, kind, str(error.detail), str(error.detail), error.headers
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        log_failure("internal error", error, request_id=getattr(request.state, "request_id", None))
        return problem_response(
            request, 500, "internal-error", "Internal error", "the server failed; the request id is logged"
        )
