"""One ASGI middleware for every request: request id, size limit, security headers, a log line.

* Request id: the client's ``X-Request-ID`` when it is 1-64 characters of ``[A-Za-z0-9-]``, else a new
  random one; echoed in the response header and in problem bodies, and in the log line.
* Size limit: a ``Content-Length`` over the limit is refused before reading (413); a chunked body is
  counted as it streams and the response is replaced by a 413 once it goes over.
* API keys are not checked here but by a dependency of the API routes (:mod:`chestlens.serve.security`),
  so the OpenAPI document declares them.
* Log line (JSON, logger ``chestlens.serve``): method, path, status, milliseconds, request id; never a
  query string, a file name or anything from an image.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class _BodyTooLargeError(Exception):
    pass


def _problem_message(
    status: int, kind: str, title: str, detail: str, request_id: str
) -> tuple[Message, Message]:
    body = Problem(type=f"/problems/{kind}", title=title, status=status, detail=detail, request_id=request_id)
    data = json.dumps(body.model_dump()).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(data)).encode()),
            (b"x-request-id", request_id.encode()),
            *SECURITY_HEADERS,
        ],
    }
    return start, {"type": "http.response.body", "body": data}


class GuardMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app, self.max_body = app, max_body_bytes

    def _refusal(self, scope: Scope, request_id: str) -> tuple[Message, Message] | None:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            return _problem_message(
                413,
                "payload-too-large",
                "Payload too large",
                f"the request body of {int(length):,} bytes exceeds the limit of {self.max_body:,} bytes",
                request_id,
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = {"code": 500}
        received = {"bytes": 0, "over": False}

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received["bytes"] += len(message.get("body", b""))
                if received["bytes"] > self.max_body:
                    received["over"] = True
                    raise _BodyTooLargeError
            return message

        replaced = {"done": False}

        async def guarded_send(message: Message) -> None:
            if received["over"]:  # whatever the app answers, the client gets the 413
                if not replaced["done"]:
                    replaced["done"] = True
                    status["code"] = 413
                    for part in _problem_message(
                        413,
                        "payload-too-large",
                        "Payload too large",
                        f"the request body exceeds the limit of {self.max_body:,} bytes",
                        request_id,
                    ):
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

        refusal = self._refusal(scope, request_id)
        try:
            if refusal is not None:
                status["code"] = refusal[0]["status"]
                for part in refusal:
                    await send(part)
            else:
                try:
                    await self.app(scope, counted_receive, guarded_send)
                except _BodyTooLargeError:
                    await guarded_send({"type": "http.response.start", "status": 413, "headers": []})
        finally:
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status["code"],
                    "ms": round((time.perf_counter() - start) * 1000.0, 1),
                },
            )


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
