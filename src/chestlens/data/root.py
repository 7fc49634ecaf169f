"""Where the real data lives: ``$CHESTLENS_DATA``, never a copy inside the repository."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "CHESTLENS_DATA"
REQUIRE_DATA_ENV = "CHESTLENS_REQUIRE_DATA"


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The data root: ``explicit`` if given, else ``$CHESTLENS_DATA``, else ``../shared/data`` if it exists.

    Returns None when nothing is configured and the default location does not exist.
    """
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    default = Path("../shared/data")
    return default if default.is_dir() else None
