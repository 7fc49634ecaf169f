"""Training checkpoints: written atomically, read back with ``weights_only=True``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from chestlens.atomic import write_bytes_atomic

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], out_dir: Path) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``out_dir/checkpoint.pt`` atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_bytes_atomic(out_dir / CHECKPOINT_FILE, buffer.getvalue())


def load_checkpoint_state(out_dir: Path) -> dict[str, Any] | None:
    """The last checkpoint in ``out_dir``, or None if there is none."""
    target = out_dir / CHECKPOINT_FILE
    if not target.is_file():
        return None
    return torch.load(target, map_location="cpu", weights_only=True)
