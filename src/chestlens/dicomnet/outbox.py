"""A durable outbox: one JSON file per (result file, destination), rewritten atomically on every change.

``<state_dir>/outbox/<id>.json`` holds the item's state: ``pending`` (with the number of attempts, the
time of the next one and the last error), ``delivered`` or ``failed`` (attempts exhausted). The DICOM file
it points to stays in ``<state_dir>/results``. Nothing is kept in memory only, so a restart of the
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
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, identifier: str) -> Path:
        return self.folder / f"{identifier}.json"

    def _write(self, item: OutboxItem) -> OutboxItem:
        write_text_atomic(self._path(item.id), json.dumps(asdict(item), indent=1) + "\n")
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
            existing = self._path(identifier)
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

    def items(self) -> list[OutboxItem]:
        """Every item, oldest first."""
        with self._lock:
            found = [self._read(path) for path in self.folder.glob("*.json")]
        return sorted(found, key=lambda item: (item.created, item.id))

    def due(self, now: float | None = None) -> list[OutboxItem]:
        """Pending items whose next attempt time has come, oldest first."""
        moment = time.time() if now is None else now
        return [item for item in self.items() if item.status == "pending" and item.next_attempt <= moment]

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
