"""Connection limits of ``chestlens serve``: what uvicorn has, and the header timeout it lacks.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``), the requests handled at once
(``limit_concurrency``: over it, new requests get 503), the header size with h11
(``h11_max_incomplete_event_size``) and the listen backlog; :func:`uvicorn_options` sets them all from
:class:`~chestlens.serve.settings.ServeSettings` (and turns WebSockets off: no route uses them).

uvicorn has no header timeout: its keep-alive timer is armed only after a response, so a connection that
never completes its request line and headers (none at all, or a byte every few seconds) stays open for
good; 500 such sockets stayed open for 30 s and more in the reliability audit, and 50 were all still open
after 30 s here before this module. And with httptools (uvicorn's default when installed) nothing bounds
the header size.

:class:`GuardedHTTPProtocol` (uvicorn's own protocol class, httptools when installed, else h11, with
:class:`HeaderTimeoutMixin`) adds, per connection:

* a header timeout: from the connection being made, or from the first byte of a later request on a
  keep-alive connection, the request line and headers must be complete within ``header_timeout_s``;
  otherwise the connection gets a 408 problem document and is closed;
* a header size limit (``max_header_bytes``) for both parsers: more bytes without complete headers get
  431 and the connection is closed;
* the rest of a body nobody reads (the app answered early, e.g. 401 to an upload) must arrive within
  ``body_timeout_s`` of its headers, as a body the app reads must
  (:class:`~chestlens.serve.middleware.GuardMiddleware` answers 408 there); otherwise the connection is
  closed.

uvicorn builds the protocol with its own arguments, so the limits are per process:
:func:`use_limits` sets them (the CLI, tests); a uvicorn worker process reads them from the settings in
its environment (:meth:`~chestlens.serve.settings.ServeSettings.from_env`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from chestlens.serve.problems import PROBLEM_JSON, Problem
from chestlens.serve.settings import ServeSettings

try:
    import httptools  # noqa: F401  (uvicorn picks its httptools protocol when this imports)
except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol
else:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The per-connection limits :class:`HeaderTimeoutMixin` enforces."""

    header_timeout_s: float
    max_header_bytes: int
    body_timeout_s: float

    @classmethod
    def of(cls, settings: ServeSettings) -> ConnectionLimits:
        return cls(settings.header_timeout_s, settings.max_header_bytes, settings.body_timeout_s)


_limits: dict[str, ConnectionLimits] = {}


def use_limits(limits: ConnectionLimits) -> None:
    """Set the limits of the connections this process serves from now on."""
    _limits["current"] = limits


def current_limits() -> ConnectionLimits:
    """The limits set by :func:`use_limits`; else those of the settings in the environment (a worker)."""
    if "current" not in _limits:
        use_limits(ConnectionLimits.of(ServeSettings.from_env()))
    return _limits["current"]


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that limit connections (see the module docstring)."""
    return {
        "http": GuardedHTTPProtocol,
        "ws": "none",  # the service has no WebSocket routes: an Upgrade header is an ordinary request
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "backlog": settings.backlog,
    }


def _problem_bytes(status: int, reason: str, kind: str, detail: str) -> bytes:
    """A complete HTTP/1.1 response with a problem document that closes the connection."""
    body = json.dumps(
        Problem(type=f"/problems/{kind}", title=reason, status=status, detail=detail).model_dump()
    )
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {PROBLEM_JSON}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return (head + body).encode()


class HeaderTimeoutMixin:
    """Header timeout, header size limit and the deadline of an unread body, over a uvicorn HTTP protocol
    (see the module docstring). Relies on what both of uvicorn's protocols have: ``transport``, ``cycle``
    (the current request, replaced when the next request's headers are complete), ``loop``."""

    transport: asyncio.Transport
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = current_limits()
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None  # "headers" or "body" while a timer runs
        self._header_bytes = 0
        self._request_started = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._arm("headers", self._limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        state = self._state()
        if state == "headers" and self._waiting_for != "headers":
            self._arm("headers", self._limits.header_timeout_s)
        elif state == "body" and self._waiting_for != "body":
            left = self._request_started + self._limits.body_timeout_s - self.loop.time()
            self._arm("body", max(left, 0.0))
        if self._waiting_for == "headers":
            self._header_bytes += len(data)
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not before:  # a request's headers are complete: the app has it now
            self._request_started = self.loop.time()
            self._disarm()
        elif self._waiting_for == "headers" and self._header_bytes > self._limits.max_header_bytes:
            detail = f"the request line and headers exceed {self._limits.max_header_bytes:,} bytes"
            self._refuse(_problem_bytes(431, "Request Header Fields Too Large", "headers-too-large", detail))

    def _state(self) -> str | None:
        """``headers`` between requests, ``body`` while the rest of an answered request's body comes in,
        None while the app handles a request (its body deadline is the middleware's)."""
        cycle = self.cycle
        if cycle is None or (cycle.response_complete and not cycle.more_body):
            return "headers"
        return "body" if cycle.response_complete else None

    def _arm(self, waiting_for: str, seconds: float) -> None:
        self._disarm()
        self._waiting_for, self._header_bytes = waiting_for, 0
        self._timer = self.loop.call_later(seconds, self._expired, waiting_for)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._waiting_for = None, None

    def _expired(self, waiting_for: str) -> None:
        self._timer = None
        if self._state() != waiting_for:
            self._waiting_for = None
            return
        if waiting_for == "headers":
            detail = f"the request line and headers did not arrive within {self._limits.header_timeout_s:g} s"
            self._refuse(_problem_bytes(408, "Request Timeout", "request-timeout", detail))
        else:
            self._refuse(b"")

    def _refuse(self, response: bytes) -> None:
        """Send ``response`` (if any) and close the connection."""
        self._disarm()
        if self.transport.is_closing():
            return
        if response:
            self.transport.write(response)
        self.transport.close()


class GuardedHTTPProtocol(HeaderTimeoutMixin, _UvicornProtocol):
    """uvicorn's HTTP protocol with :class:`HeaderTimeoutMixin`; pass it as ``uvicorn.run(http=...)``."""
