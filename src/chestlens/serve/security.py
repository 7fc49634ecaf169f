"""API keys: a FastAPI security dependency, so the OpenAPI document declares them.

When keys are configured (:attr:`ServeSettings.api_keys <chestlens.serve.settings.ServeSettings>`),
:func:`chestlens.serve.app.create_app` includes the API routers (``/api/v1`` with its OpenAPI document,
and DICOMweb STOW-RS at ``/dicomweb``) with ``dependencies=[Depends(require_api_key)]``: every operation
then lists the ``APIKey`` scheme (``X-API-Key`` header) under ``security`` and its 401 response, and a
request without a valid key answers 401 with a problem document. Without keys the routers are included
as they are and the API is open.
``/healthz``, ``/readyz``, the page and its assets never need a key. CORS preflights (``OPTIONS``) are
answered by the CORS middleware before any route, so they need no key either. The key guards the
operations, not the URL space: a path under ``/api/`` that is no route answers 404 (a wrong method 405)
with or without a key.

FastAPI reads and parses a route's body (a whole multipart upload) before it solves the dependencies,
so the API routers use :class:`KeyFirstRoute`: on a route with a body the same check also runs before
the body is read, and a request without a valid key is refused unread.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader

from chestlens.serve.problems import Problem, ProblemError

API_KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="APIKey",
    description="One of the keys the server was started with (CHESTLENS_API_KEYS or --api-key-file).",
    auto_error=False,  # the 401 is ours: a problem document, not FastAPI's {"detail": ...}
)

#: The 401 as the routers document it when keys are set.
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "content": {"application/problem+json": {}}, "description": "no valid API key"}
}


def key_accepted(given: str | None, keys: frozenset[str]) -> bool:
    """Whether ``given`` is one of ``keys``, compared in constant time.

    Bytes are compared, not strings: :func:`hmac.compare_digest` refuses ``str`` with non-ASCII
    characters, and a header value is any byte string (Starlette decodes it as latin-1).
    """
    raw = (given or "").encode("latin-1", "replace")
    matches = [hmac.compare_digest(raw, key.encode()) for key in keys]  # no early exit
    return any(matches)


def check_api_key(request: Request, given: str | None) -> None:
    """Raise the 401 problem unless the app has no keys or ``given`` is one of them."""
    keys: frozenset[str] = request.app.state.settings.api_keys
    if keys and not key_accepted(given, keys):
        raise ProblemError(401, "unauthorized", "API key required", f"send a valid {API_KEY_HEADER} header")


async def require_api_key(
    request: Request, api_key: Annotated[str | None, Security(api_key_header)] = None
) -> None:
    """The security dependency of the API routers (see the module docstring)."""
    check_api_key(request, api_key)


class KeyFirstRoute(APIRoute):
    """An API route whose key check comes before FastAPI reads the request body.

    FastAPI solves dependencies only after it has read the body; for a route with a body this route
    checks the key first, so an upload without a valid key is refused unread (and a malformed one gets
    the 401, not a 400). :func:`require_api_key` still runs as the route's dependency.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:  # nothing is read before the dependencies run
            return handler

        async def key_first(request: Request) -> Response:
            check_api_key(request, request.headers.get(API_KEY_HEADER))
            return await handler(request)

        return key_first
