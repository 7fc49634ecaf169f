"""Issue 19, item 7: slow clients. "500 slow sockets stayed open for 30 s."

A real uvicorn (in a thread, on a free loopback port) serves a model-less app with the options
``chestlens serve`` passes (:func:`chestlens.serve.http_limits.uvicorn_options`), with short limits:
sockets that trickle their request line and headers, or send nothing, are closed with a 408 within the
header timeout while normal requests are served; a body trickled slower than the body timeout gets a 408
problem; too many header bytes get 431; over the connection limit uvicorn answers 503. The server stays up
throughout.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from chestlens.errors import ChestlensInputError
from chestlens.export.browser import free_port
from chestlens.serve import http_limits
from chestlens.serve.app import create_app
from chestlens.serve.http_limits import ConnectionLimits, current_limits, use_limits, uvicorn_options
from chestlens.serve.settings import SETTINGS_ENV, ServeSettings

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
SLOW_SOCKETS = 50
IDLE_SOCKETS = 10


@contextmanager
def _server(settings: ServeSettings, **options: object) -> Iterator[str]:
    """uvicorn serving ``create_app(settings)`` with the CLI's connection options; yields the base URL."""
    port = free_port()
    use_limits(ConnectionLimits.of(settings))
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        **{**uvicorn_options(settings), **options},
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _settings(tmp_path, **changes: object) -> ServeSettings:
    values = {"header_timeout_s": HEADER_TIMEOUT_S, "body_timeout_s": BODY_TIMEOUT_S, **changes}
    return ServeSettings(data_dir=tmp_path, models=(), device="cpu", **values)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


def time_until_closed(port: int, *, slow: int, idle: int, give_up_s: float) -> tuple[list[float], bytes]:
    """Open ``slow`` sockets that send a partial request and then one header byte every 0.2 s, and ``idle``
    that send nothing; the seconds until the server closed each (``give_up_s`` for those still open then),
    and the first bytes one of them got back."""
    socks = [_connect(port) for _ in range(slow + idle)]
    started = time.monotonic()
    for sock in socks[:slow]:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    closed: dict[socket.socket, float] = {}
    answer = b""
    while len(closed) < len(socks) and time.monotonic() - started < give_up_s:
        readable, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.2)
        for sock in readable:
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            answer = answer or data
            if not data:
                closed[sock] = time.monotonic() - started
        for sock in socks[:slow]:
            if sock not in closed:
                try:
                    sock.send(b"a")
                except OSError:
                    closed[sock] = time.monotonic() - started
    for sock in socks:
        sock.close()
    return [closed.get(sock, give_up_s) for sock in socks], answer


def test_slow_and_idle_sockets_are_closed_within_the_header_timeout(tmp_path):
    with _server(_settings(tmp_path)) as base:
        port = int(base.rsplit(":", 1)[1])
        served: dict[str, float] = {}

        def normal_request() -> None:
            time.sleep(0.3)  # while the slow sockets hang on
            begin = time.monotonic()
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            served["s"] = time.monotonic() - begin

        thread = threading.Thread(target=normal_request)
        thread.start()
        open_for, answer = time_until_closed(port, slow=SLOW_SOCKETS, idle=IDLE_SOCKETS, give_up_s=10.0)
        thread.join()
        assert served["s"] < 1.0
        assert max(open_for) < HEADER_TIMEOUT_S + 1.0, sorted(open_for)[-5:]
        assert min(open_for) >= HEADER_TIMEOUT_S * 0.9
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head
        assert json.loads(body)["type"] == "/problems/request-timeout"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # still serving


def test_a_keep_alive_connection_gets_the_header_timeout_for_its_next_request(tmp_path):
    with _server(_settings(tmp_path, keep_alive_timeout_s=30.0)) as base:
        sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        begin = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request never completes its headers
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert sock.recv(4096) == b"" and time.monotonic() - begin < HEADER_TIMEOUT_S + 1.0
        sock.close()


def test_too_many_header_bytes_get_431(tmp_path):
    with _server(_settings(tmp_path, max_header_bytes=4096)) as base:
        sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * 8192)
        answer = sock.recv(4096)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        big = httpx.get(f"{base}/healthz", headers={"X-Ok": "b" * 1024}, timeout=5)
        assert big.status_code == 200


MULTIPART = "Content-Type: multipart/form-data; boundary=b\r\n"
#: The start of a well-formed multipart body: the file's bytes follow, one at a time.
PART = b'--b\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'


def _trickle_body(port: int, path: str) -> tuple[bytes, float]:
    """POST ``path`` a 1000-byte multipart body whose file comes a byte every 0.1 s; the answer and when
    the connection ended."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n{MULTIPART}\r\n"
    sock.sendall(head.encode() + PART)
    begin = time.monotonic()
    sock.setblocking(False)
    answer = b""
    while time.monotonic() - begin < 10:
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                break
            answer += data
            continue
        try:
            sock.send(b"x")
        except OSError:
            break
    sock.close()
    return answer, time.monotonic() - begin


def test_a_trickled_body_gets_408_and_the_server_stays_up(tmp_path):
    with _server(_settings(tmp_path)) as base:
        answer, took = _trickle_body(int(base.rsplit(":", 1)[1]), "/api/v1/screenings")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert json.loads(body)["detail"] == f"the request body did not arrive within {BODY_TIMEOUT_S:g} s"
        assert took < BODY_TIMEOUT_S + 1.5  # answered, and the connection closed
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def test_an_unread_body_after_an_early_answer_is_bounded_too(tmp_path):
    """A 401 is sent before the upload is read; the rest of the body must still come within the body
    timeout, else the connection is closed."""
    with _server(_settings(tmp_path, api_keys=frozenset({"s3cret"}))) as base:
        answer, took = _trickle_body(int(base.rsplit(":", 1)[1]), "/api/v1/screenings")
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
        assert took < BODY_TIMEOUT_S + 1.5
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def test_over_the_connection_limit_uvicorn_answers_503(tmp_path):
    with _server(_settings(tmp_path, max_connections=4, header_timeout_s=30.0)) as base:
        port = int(base.rsplit(":", 1)[1])
        held = [_connect(port) for _ in range(4)]
        time.sleep(0.2)
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 503
        for sock in held:
            sock.close()
        time.sleep(0.2)
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("field", ["header_timeout_s", "body_timeout_s", "keep_alive_timeout_s"])
def test_timeouts_must_be_positive(field):
    with pytest.raises(ChestlensInputError, match=f"{field}=0: Input should be greater than 0"):
        ServeSettings.load(**{field: 0})


def test_a_worker_process_reads_its_limits_from_the_settings_in_its_environment(monkeypatch):
    settings = ServeSettings(header_timeout_s=3.5, body_timeout_s=7.0, max_header_bytes=8192, models=())
    monkeypatch.setenv(SETTINGS_ENV, settings.to_env())  # what the CLI sets for --workers N
    monkeypatch.setattr(http_limits, "_limits", {})  # a fresh process: nothing set yet
    assert current_limits() == ConnectionLimits(3.5, 8192, 7.0)
    options = uvicorn_options(settings)
    assert options["http"] is http_limits.GuardedHTTPProtocol and options["ws"] == "none"
    assert options["limit_concurrency"] == 1000 and options["timeout_keep_alive"] == 5.0
