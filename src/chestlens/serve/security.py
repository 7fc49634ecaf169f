"""Authentication and roles on the API: FastAPI security dependencies, so the OpenAPI document declares
them (roles and credentials: :mod:`chestlens.serve.auth`).

:func:`chestlens.serve.app.create_app` includes the API routers (``/api/v1`` with its OpenAPI document, and
DICOMweb STOW-RS at ``/dicomweb``) with :func:`security_dependencies`: the ``APIKey`` scheme (``X-API-Key``
header) when API keys are configured, the ``Bearer`` scheme (``Authorization: Bearer <JWT>``) when a token
key is, both when both are. Every operation then lists them under ``security`` (either one will do) with
its 401 and 403 responses. Each operation depends on :func:`allow` with the permission it needs; that
dependency authenticates the request (:func:`authenticate`, once per request, kept in
``request.state.principal`` for the routes and the access log) and checks the role:

* no credentials, unknown key, invalid or expired token: 401 problem (``WWW-Authenticate: Bearer`` for
  tokens);
* a valid principal whose role lacks the permission (or a token without any chestlens role): 403 problem.

Without any credentials configured the API is open and every request is the anonymous admin
(:data:`~chestlens.serve.auth.OPEN`). ``/healthz``, ``/readyz``, the page and its assets never need
credentials; CORS preflights (``OPTIONS``) are answered by the CORS middleware before any route. A path
under ``/api/`` that is no route answers 404 (a wrong method 405) with or without credentials. When both
headers are sent, ``X-API-Key`` decides.

FastAPI reads and parses a route's body (a whole multipart upload) before it solves the dependencies, so
the API routers use :class:`KeyFirstRoute`: on a route with a body the same check runs before the body is
read, and a request without valid credentials (or the role) is refused unread.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPBearer

from chestlens.serve.auth import (
    OPEN,
    KeyTable,
    Permission,
    Principal,
    TokenError,
    TokenVerifier,
    key_principal,
    parse_key_entries,
    parse_role_map,
    token_keys,
    who_needs,
)
from chestlens.serve.problems import Problem, ProblemError
from chestlens.serve.settings import ServeSettings

API_KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="APIKey",
    description="One of the keys the server was started with (CHESTLENS_API_KEYS or --api-key-file); "
    "its role (submitter, reader, admin) decides what it may do.",
    auto_error=False,  # the 401 is ours: a problem document, not FastAPI's {"detail": ...}
)
bearer_scheme = HTTPBearer(
    scheme_name="Bearer",
    bearerFormat="JWT",
    description="An OIDC/JWT access token signed with the configured key; its roles claim decides what it "
    "may do.",
    auto_error=False,
)

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
#: The 401 and 403 as the routers document them when credentials are configured.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {**_PROBLEM, "description": "no valid credentials: missing, unknown, expired or invalid"},
    403: {**_PROBLEM, "description": "valid credentials whose role may not do this"},
}


@dataclass(frozen=True, slots=True)
class Credentials:
    """The API keys and the token verifier of an app (built once, at start)."""

    keys: KeyTable
    tokens: TokenVerifier | None

    @property
    def configured(self) -> bool:
        return bool(self.keys) or self.tokens is not None

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> Credentials:
        """Keys and token verifier of ``settings``; a key file that cannot be used raises a one-line
        :class:`~chestlens.errors.ChestlensInputError` (the settings themselves are valid already)."""
        tokens = None
        if settings.bearer_tokens:
            tokens = TokenVerifier(
                keys=token_keys(settings.jwt_secret, settings.jwt_public_key_file, settings.jwt_jwks_file),
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                roles_claim=settings.jwt_roles_claim,
                role_map=parse_role_map(settings.jwt_role_map),
                leeway_s=settings.jwt_leeway_s,
            )
        return cls(KeyTable(parse_key_entries(settings.api_keys)), tokens)


def security_dependencies(credentials: Credentials) -> list[Any]:
    """The security schemes to declare on the API routers (none for an open API)."""
    schemes = [api_key_header] if credentials.keys else []
    schemes += [bearer_scheme] if credentials.tokens is not None else []
    return [Security(scheme) for scheme in schemes]


def _unauthorized(credentials: Credentials, detail: str | None = None) -> ProblemError:
    if credentials.tokens is None:
        return ProblemError(
            401, "unauthorized", "API key required", detail or f"send a valid {API_KEY_HEADER} header"
        )
    wanted = f"a valid {API_KEY_HEADER} header or " if credentials.keys else "a valid "
    challenge = 'Bearer error="invalid_token"' if detail else "Bearer"
    return ProblemError(
        401,
        "unauthorized",
        "Authentication required",
        detail or f"send {wanted}Authorization: Bearer token",
        {"WWW-Authenticate": challenge},
    )


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authenticate(request: Request) -> Principal:
    """The principal of ``request`` (computed once, then kept in ``request.state.principal``); 401
    problem for missing or invalid credentials, 403 for a token without a chestlens role."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    credentials: Credentials = request.app.state.credentials
    principal = _principal(request, credentials)
    request.state.principal = principal
    return principal


def _principal(request: Request, credentials: Credentials) -> Principal:
    if not credentials.configured:
        return OPEN
    given_key = request.headers.get(API_KEY_HEADER)
    token = _bearer(request)
    if given_key is not None or token is None or credentials.tokens is None:
        role = credentials.keys.role_of(given_key) if given_key else None
        if given_key is None or role is None:
            raise _unauthorized(credentials)
        return key_principal(given_key.encode("latin-1", "replace"), role)
    try:
        principal = credentials.tokens.principal(token)
    except TokenError as error:
        raise _unauthorized(credentials, error.reason) from None
    if principal is None:
        raise ProblemError(
            403,
            "forbidden",
            "Forbidden",
            f"the bearer token grants no chestlens role (claim {credentials.tokens.roles_claim!r})",
        )
    return principal


class Requirement:
    """The dependency of an operation that needs ``permission``; returns the request's principal."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, request: Request) -> Principal:
        principal = authenticate(request)
        if not principal.may(self.permission):
            raise ProblemError(
                403,
                "forbidden",
                "Forbidden",
                f"the {principal.role} role may not {self.permission} (roles that may: "
                f"{who_needs(self.permission)})",
            )
        return principal


def allow(permission: Permission) -> Any:
    """``Depends`` on :class:`Requirement` (use as a parameter default or in ``dependencies=[...]``)."""
    return Depends(Requirement(permission))


class KeyFirstRoute(APIRoute):
    """An API route whose credential and role check comes before FastAPI reads the request body.

    FastAPI solves dependencies only after it has read the body; for a route with a body this route runs
    its :class:`Requirement` first, so an upload without valid credentials is refused unread (and a
    malformed one gets the 401, not a 400). The requirement still runs as the route's dependency (the
    principal is kept, so it is computed once).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        requirements = [d.call for d in self.dependant.dependencies if isinstance(d.call, Requirement)]
        if self.body_field is None or not requirements:  # nothing is read before the dependencies run
            return handler

        async def key_first(request: Request) -> Response:
            for requirement in requirements:
                await requirement(request)
            return await handler(request)

        return key_first
