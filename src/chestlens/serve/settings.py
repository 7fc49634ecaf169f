"""Configuration of ``chestlens serve``: one frozen dataclass for :func:`chestlens.serve.app.create_app`.

With ``--workers N`` uvicorn imports the app in N processes, so the settings travel as JSON in the
environment variable :data:`SETTINGS_ENV` (:meth:`ServeSettings.to_env` / :meth:`ServeSettings.from_env`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from chestlens.io.limits import DEFAULT_MAX_PIXELS
from chestlens.models.catalog import default_models

SETTINGS_ENV = "CHESTLENS_SERVE_SETTINGS"
API_KEYS_ENV = "CHESTLENS_API_KEYS"
DEFAULT_DATA_DIR = Path("chestlens-serve")
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """Everything the service needs to know.

    Attributes:
        models: bundles to load (names or folders, any kind; see ``Screener.from_models``); default:
            :func:`~chestlens.models.catalog.default_models`, the same set as ``predict`` and ``demo``.
        data_dir: the SQLite database, the job spool and the instance files live here.
        database_url: any SQLAlchemy URL (e.g. ``postgresql+psycopg://...``); None: SQLite in ``data_dir``.
        max_upload_bytes: largest request body accepted (bytes); larger ones answer 413.
        max_pixels: largest image frame accepted (pixels), checked from the header before decoding.
        max_series_bytes: largest total uncompressed size of a zipped series (bytes).
        max_series_files: most files in a zipped series.
        max_batch: most images per model batch (micro-batching across concurrent requests).
        batch_wait_ms: how long the batcher waits for more requests after the first one (ms).
        queue_size: requests waiting for the models before new ones answer 503 with Retry-After.
        retry_after_s: the Retry-After value of that 503 (seconds).
        api_keys: accepted ``X-API-Key`` values; empty: the API is open (bind to loopback then).
        cors_origins: origins allowed by CORS; empty (default): CORS headers are never sent.
        device: ``auto``, ``cpu`` or ``cuda``.
        history_limit: most results the worklist lists.
    """

    models: tuple[str, ...] = field(default_factory=default_models)
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    max_upload_bytes: int = 100 * MB
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_series_bytes: int = 1024 * MB
    max_series_files: int = 2000
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    queue_size: int = 64
    retry_after_s: int = 2
    api_keys: frozenset[str] = field(default_factory=frozenset)
    cors_origins: tuple[str, ...] = ()
    device: str = "auto"
    history_limit: int = 200

    @property
    def url(self) -> str:
        """The SQLAlchemy URL in use."""
        return self.database_url or f"sqlite:///{(Path(self.data_dir) / 'chestlens.sqlite3').resolve()}"

    def replace(self, **changes: object) -> ServeSettings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_env(self) -> str:
        """JSON for :data:`SETTINGS_ENV` (API keys excluded: they stay in :data:`API_KEYS_ENV`)."""
        values = dataclasses.asdict(self)
        values.update(data_dir=str(self.data_dir), models=list(self.models), api_keys=[])
        values["cors_origins"] = list(self.cors_origins)
        return json.dumps(values)

    @classmethod
    def from_env(cls) -> ServeSettings:
        """Settings from :data:`SETTINGS_ENV` (defaults when unset) plus keys from :data:`API_KEYS_ENV`."""
        values = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        for name in ("models", "cors_origins"):
            if name in values:
                values[name] = tuple(values[name])
        values["api_keys"] = api_keys_from_env()
        return cls(**values)


def api_keys_from_env() -> frozenset[str]:
    """Comma-separated keys in :data:`API_KEYS_ENV` (blank entries ignored)."""
    return frozenset(k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip())
