"""The listener's audit log: who sent what and when, what was screened, where each result went.

One JSON object per line in ``<state_dir>/audit.jsonl`` (UTC ISO time, event, fields), flushed and
fsynced per line. Identifiers are salted keys only (:func:`chestlens.io.deid.salted_key`): patient,
study, series and SOP instance keys; never names, patient ids or accession numbers. AE titles and
addresses identify machines, not patients, and are kept in clear.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from pydicom.dataset import Dataset

from chestlens.io.deid import salted_key

AUDIT_FILE = "audit.jsonl"
log = logging.getLogger("chestlens.dicomnet")


def dataset_keys(dataset: Dataset) -> dict[str, str | None]:
    """Salted keys of the patient, study, series and instance of ``dataset`` (None where absent)."""
    return {
        "patient_key": salted_key(dataset.get("PatientID")),
        "study_key": salted_key(dataset.get("StudyInstanceUID")),
        "series_key": salted_key(dataset.get("SeriesInstanceUID")),
        "instance_key": salted_key(dataset.get("SOPInstanceUID")),
    }


class AuditLog:
    """Append-only JSON-lines audit log, safe to write from several threads."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / AUDIT_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(self, event: str, **fields: object) -> None:
        """Append one event (and log it at INFO); ``fields`` must hold no patient identity."""
        entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
        line = json.dumps(entry, sort_keys=False, default=str)
        with self._lock, self.path.open("a", encoding="utf-8") as stream:
            stream.write(line + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        log.info("%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))

    def entries(self) -> list[dict[str, object]]:
        """Every recorded event, oldest first."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
