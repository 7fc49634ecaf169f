"""One ASGI middleware for every request: request id, size limit, body timeout, security headers, a log
line and the access log.

* Request id: the client's ``X-Request-ID`` when it is 1-64 characters of ``[A-Za-z0-9-]``, else a new
  random one; echoed in the response header and in problem bodies, and in the log line.
* Size limit: a ``Content-Length`` over the limit is refused before reading (413); a chunked body is
  counted as it streams and the response is replaced by a 413 once it goes over.
* Body timeout: the whole body must arrive within ``body_timeout_s`` of the request's start (its headers
  being complete); a body that is slower gets a 408 problem with ``Connection: close``, and the server
  goes on serving the others. Headers are bounded one level below, in the HTTP protocol
  (:mod:`chestlens.serve.http_limits`), because an incomplete request never reaches the app.
* Credentials and roles are not checked here but by dependencies of the API routes
  (:mod:`chestlens.serve.security`), so the OpenAPI document declares them.
* Log line (JSON, logger ``chestlens.serve``): method, path (the route template: no UID from a URL,
  :func:`loggable_path`), status, milliseconds, request id; never a
  query string, a file name or anything from an image.
* Access log: every request that reached an API route, one JSON line (:mod:`chestlens.serve.access_log`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chestlens.serve.access_log import AccessLog
from chestlens.serve.problems import PROBLEM_JSON, Problem

log = logging.getLogger("chestlens.serve")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        # 'wasm-unsafe-eval': WebAssembly only (onnxruntime-web of the offline page at /offline/), no JS eval
        b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
        b"script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; frame-ancestors 'none'",
    ),
]


class RequestRefusedError(Exception):
    """Raised from ``receive`` when the body breaks a limit; the response becomes :attr:`problem`.

    :func:`chestlens.serve.app.create_app` answers it with that problem (so no route logs it as an
    internal error); whatever the app answers, the middleware sends the problem instead.
    """

    def __init__(self, status: int, kind: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = (status, kind, title, detail)


def _problem_message(
    status: int, kind: str, title: str, detail: str, request_id: str
) -> tuple[Message, Message]:
    body = Problem(type=f"/problems/{kind}", title=title, status=status, detail=detail, request_id=request_id)
    data = json.dumps(body.model_dump()).encode()
    close = [(b"connection", b"close")] if status == 408 else []  # the rest of a slow body is not read
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(data)).encode()),
            (b"x-request-id", request_id.encode()),
            *close,
            *SECURITY_HEADERS,
        ],
    }
    return start, {"type": "http.response.body", "body": data}


class GuardMiddleware:
    """See the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout_s: float,
        access_log: AccessLog | None = None,
    ) -> None:
        self.app, self.max_body, self.body_timeout_s = app, max_body_bytes, body_timeout_s
        self.access_log = access_log

    def _too_large(self, given: int | None = None) -> RequestRefusedError:
        size = "the request body" if given is None else f"the request body of {given:,} bytes"
        detail = f"{size} exceeds the limit of {self.max_body:,} bytes"
        return RequestRefusedError(413, "payload-too-large", "Payload too large", detail)

    def _refusal(self, scope: Scope) -> RequestRefusedError | None:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            return self._too_large(int(length))
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        status = {"code": 500}
        body = {"bytes": 0, "done": False}
        refused: dict[str, Any] = {"error": self._refusal(scope), "sent": False}

        async def guarded_receive() -> Message:
            if body["done"]:  # after the body: waiting for a disconnect is not timed
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                detail = f"the request body did not arrive within {self.body_timeout_s:g} s"
                refused["error"] = RequestRefusedError(408, "request-timeout", "Request timeout", detail)
                raise refused["error"] from None
            if message["type"] == "http.request":
                body["bytes"] += len(message.get("body", b""))
                body["done"] = not message.get("more_body", False)
                if body["bytes"] > self.max_body:
                    refused["error"] = self._too_large()
                    raise refused["error"]
            return message

        async def guarded_send(message: Message) -> None:
            if refused["error"] is not None:  # whatever the app answers, the client gets the refusal
                if not refused["sent"]:
                    refused["sent"] = True
                    status["code"] = refused["error"].problem[0]
                    for part in _problem_message(*refused["error"].problem, request_id):
                        await send(part)
                return
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *SECURITY_HEADERS,
                ]
            await send(message)

        try:
            if refused["error"] is not None:
                await guarded_send({"type": "http.response.start", "status": 413, "headers": []})
            else:
                try:
                    await self.app(scope, guarded_receive, guarded_send)
                except RequestRefusedError:
                    await guarded_send({"type": "http.response.start", "status": 0, "headers": []})
        finally:
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": loggable_path(scope),
                    "status": status["code"],
                    "ms": round((time.perf_counter() - start) * 1000.0, 1),
                },
            )
            if self.access_log is not None:
                self.access_log.record(scope, status["code"], request_id)


#: A DICOM UID (digits and dots, three components or more) in a path segment.
_UID = re.compile(r"(?<![0-9.])[0-9]+(?:\.[0-9]+){2,}(?![0-9.])")


def loggable_path(scope: Scope) -> str:
    """The request's path for the log: the matched route's template (``/dicomweb/studies/{study}``), so a
    Study Instance UID in a STOW-RS URL never reaches the log; a path that matched no route has any
    UID-like segment replaced by ``{uid}``."""
    route = getattr(scope.get("route"), "path", None)
    if isinstance(route, str):
        return route
    return _UID.sub("{uid}", str(scope.get("path") or ""))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's structured extras."""

    FIELDS = ("request_id", "method", "path", "status", "ms", "job_id", "screening_id", "event")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "info") -> None:
    """Structured JSON logs on stderr for chestlens and uvicorn's own messages."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("chestlens.serve", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
