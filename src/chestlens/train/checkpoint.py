"""Atomic training checkpoints that load with ``weights_only=True``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], out_dir: Path) -> Path:
    """Write ``state`` to ``out_dir/checkpoint.pt`` via a temp file and a rename (never half-written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / CHECKPOINT_FILE
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint.", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def load_checkpoint_state(out_dir: Path) -> dict[str, Any] | None:
    """The last checkpoint in ``out_dir``, or None if there is none."""
    target = out_dir / CHECKPOINT_FILE
    if not target.is_file():
        return None
    return torch.load(target, map_location="cpu", weights_only=True)
