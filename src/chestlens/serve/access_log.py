"""The access log of ``chestlens serve``: who did what to which result, and how it was answered.

One JSON object per line in ``<data_dir>/access.jsonl`` (mode 0600), for every request that reached an API
route (``/api/...``, ``/dicomweb/...``), refused ones included (401, 403, 404...):

``time`` (UTC, ISO 8601), ``principal`` (the hashed principal id, :attr:`chestlens.serve.auth.Principal.id`,
or ``anonymous`` for an open server, for requests without valid credentials and for tokens that grant no
chestlens role), ``role`` (None for those refused), ``method``, ``route`` (the route template, e.g.
``/api/v1/screenings/{screening_id}``), ``screening_id`` / ``job_id`` (the server's own random ids: from
the path, or the one a submission made), ``status`` and ``request_id`` (the ``X-Request-ID`` of the
server log line).

Never in it: API keys, tokens or any header, query strings, client file names, the raw path (the template
stands for it, so a Study Instance UID in a STOW-RS path is not kept), anything from an image. A path
parameter is kept only when it is one of the server's ids (32 hex characters).

Lines are appended with one ``write`` on a file opened ``O_APPEND`` per line, so several worker processes
can share the file and an external rotation (e.g. logrotate) needs no signal; there is no fsync per line
(a process crash loses nothing; an operating system crash may lose the last lines).
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from starlette.types import Scope

from chestlens.serve.auth import ANONYMOUS, Principal

ACCESS_LOG_FILE = "access.jsonl"
#: Requests to routes under these prefixes are recorded.
AUDITED = ("/api/", "/dicomweb/")
ID_FIELDS = ("screening_id", "job_id")
_OUR_ID = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger("chestlens.serve")


class AccessLog:
    """Appends access records to ``<data_dir>/access.jsonl``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / ACCESS_LOG_FILE

    def secure(self) -> None:
        """Create the file if needed and make it readable by the server's user only (0600)."""
        os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        self.path.chmod(0o600)

    def record(self, scope: Scope, status: int, request_id: str) -> None:
        """Record a finished request (nothing for requests that reached no API route). A failure to
        write is logged, never raised: the response is out already."""
        route = getattr(scope.get("route"), "path", None)
        if not isinstance(route, str) or not route.startswith(AUDITED):
            return
        state = scope.get("state") or {}
        principal: Principal | None = state.get("principal")
        ids = {**(scope.get("path_params") or {}), **(state.get("audit_ids") or {})}
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "principal": ANONYMOUS if principal is None else principal.id,
            "role": None if principal is None else principal.role.value,
            "method": scope.get("method"),
            "route": route,
            **{name: ids[name] for name in ID_FIELDS if _OUR_ID.fullmatch(str(ids.get(name, "")))},
            "status": status,
            "request_id": request_id,
        }
        self._append(json.dumps(entry) + "\n")

    def _append(self, line: str) -> None:
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, line.encode())
            finally:
                os.close(descriptor)
        except OSError as error:
            log.error(f"access log not written ({error.strerror})", extra={"event": "access_log_failed"})

    def entries(self) -> list[dict[str, object]]:
        """Every record, oldest first."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]
