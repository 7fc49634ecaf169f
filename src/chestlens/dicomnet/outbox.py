"""A durable outbox: one JSON file per (result file, destination), rewritten atomically on every change.

``<state_dir>/outbox/<id>.json`` holds a ``pending`` item's state (the number of attempts, the time of the
next one and the last error); once ``delivered`` or ``failed`` (attempts exhausted) it moves to
``<state_dir>/outbox/done/<id>.json``, so the delivery loop, which looks for due items several times a
second, reads only what is pending however long the history grows (with every item in one folder, an
idle listener with 10,000 delivered items spent 62% of a core scanning them). The DICOM file an item
points to stays in ``<state_dir>/results``. Nothing is kept in memory only, so a restart of the
listener resumes every pending delivery. The item id is derived from the SOP Instance UID and the
destination: queueing the same result for the same destination twice is a no-op.

Delivery is exactly once as far as the outbox can tell: an item is marked delivered only after the
destination answered success and is never sent again. A crash between that answer and the mark would
resend it once after restart; the SOP Instance UID is unchanged, so the PACS files it as the same
instance.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from chestlens.atomic import write_text_atomic

OUTBOX_DIR = "outbox"
DONE_DIR = "done"
Status = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One result file to deliver to one destination (identifiers as salted keys only)."""

    id: str
    file: str
    kind: str
    destination: str
    instance_key: str | None
    study_key: str | None
    created: float
    status: Status = "pending"
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str | None = None
    delivered_at: float | None = None


def item_id(sop_instance_uid: str, destination: str) -> str:
    """Stable, file-name safe id of (instance, destination)."""
    return hashlib.sha256(f"{sop_instance_uid}\x1f{destination}".encode()).hexdigest()[:32]


class Outbox:
    """The outbox folder of a listener; methods are thread-safe within one process."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = Path(state_dir) / OUTBOX_DIR
        self.done_folder = self.folder / DONE_DIR
        self.done_folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        for key, item in self._read_all(self.folder).items():  # finished items of an older listener, or
            if item.status != "pending":  # of a crash between the two steps of _write
                self._path(key).replace(self._done_path(key))

    def _path(self, identifier: str) -> Path:
        return self.folder / f"{identifier}.json"

    def _done_path(self, identifier: str) -> Path:
        return self.done_folder / f"{identifier}.json"

    def _write(self, item: OutboxItem) -> OutboxItem:
        """Write ``item`` where its status belongs; a finished item is written to ``done/`` before its
        pending file goes, so a crash in between leaves both (the finished one wins)."""
        text = json.dumps(asdict(item), indent=1) + "\n"
        if item.status == "pending":
            write_text_atomic(self._path(item.id), text)
        else:
            write_text_atomic(self._done_path(item.id), text)
            self._path(item.id).unlink(missing_ok=True)
        return item

    def add(
        self,
        file: Path,
        *,
        sop_instance_uid: str,
        kind: str,
        destination: str,
        instance_key: str | None,
        study_key: str | None,
    ) -> OutboxItem:
        """Queue ``file`` for ``destination``; returns the existing item when already queued."""
        identifier = item_id(sop_instance_uid, destination)
        with self._lock:
            for existing in (self._done_path(identifier), self._path(identifier)):
                if existing.exists():
                    return self._read(existing)
            item = OutboxItem(
                id=identifier,
                file=str(file),
                kind=kind,
                destination=destination,
                instance_key=instance_key,
                study_key=study_key,
                created=time.time(),
            )
            return self._write(item)

    @staticmethod
    def _read(path: Path) -> OutboxItem:
        return OutboxItem(**json.loads(path.read_text(encoding="utf-8")))

    def _read_all(self, folder: Path) -> dict[str, OutboxItem]:
        """The items in ``folder`` by id. A file that goes while it is listed (another process, such as
        ``listen --status`` beside a running listener, sees an item move to ``done/``) is skipped: it is
        read from ``done/``, which is listed after the pending folder."""
        found = {}
        for path in folder.glob("*.json"):
            try:
                found[path.stem] = self._read(path)
            except FileNotFoundError:
                continue
        return found

    def items(self) -> list[OutboxItem]:
        """Every item, pending and finished, oldest first."""
        with self._lock:
            found = self._read_all(self.folder) | self._read_all(self.done_folder)
        return sorted(found.values(), key=lambda item: (item.created, item.id))

    def due(self, now: float | None = None) -> list[OutboxItem]:
        """Pending items whose next attempt time has come, oldest first (reads only pending items)."""
        moment = time.time() if now is None else now
        with self._lock:
            pending = [
                item for key, item in self._read_all(self.folder).items() if not self._done_path(key).exists()
            ]
        due = [item for item in pending if item.next_attempt <= moment]
        return sorted(due, key=lambda item: (item.created, item.id))

    def delivered(self, item: OutboxItem) -> OutboxItem:
        """Mark ``item`` delivered (one more attempt, no error)."""
        with self._lock:
            done = replace(
                item,
                status="delivered",
                attempts=item.attempts + 1,
                last_error=None,
                delivered_at=time.time(),
            )
            return self._write(done)

    def attempt_failed(self, item: OutboxItem, reason: str, *, retry_in: float | None) -> OutboxItem:
        """Record a failed attempt: retried after ``retry_in`` seconds, or ``failed`` when None."""
        with self._lock:
            attempts = item.attempts + 1
            if retry_in is None:
                changed = replace(item, status="failed", attempts=attempts, last_error=reason)
            else:
                changed = replace(
                    item, attempts=attempts, last_error=reason, next_attempt=time.time() + retry_in
                )
            return self._write(changed)
