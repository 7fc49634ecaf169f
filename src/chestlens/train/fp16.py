"""Does storing a model's weights as fp16 change anything measurable? Checked on validation data before
a bundle is written with fp16 weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

SCORE_TOLERANCE = 1e-3


def rounded_to_fp16(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` as a bundle with fp16 weights gives it back: floating tensors rounded to fp16, as fp32."""
    return {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}


def use_stored_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], fp16: dict | None) -> None:
    """Load into ``model`` the weights the bundle will hold: ``state`` rounded to fp16 when the check found
    fp16 storage lossless, else ``state``; the test figures then describe the shipped weights exactly
    (``chestlens evaluate`` on the bundle reproduces them)."""
    model.load_state_dict(rounded_to_fp16(state) if fp16 and fp16["lossless"] else state)


def fp16_check(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    probabilities: Callable[[], np.ndarray],
    score: Callable[[np.ndarray], float],
    decide: Callable[[np.ndarray], np.ndarray],
    score_name: str,
    max_changed_fraction: float = 0.0,
) -> dict[str, Any]:
    """Compare the model with ``state`` rounded to fp16 against ``state`` itself; reloads ``state``.

    Args:
        probabilities: the model's validation probabilities (any shape) with the weights now loaded.
        score: the validation score of probabilities (e.g. macro AUC).
        decide: the decisions the probabilities lead to (class per image, label per pixel).
        score_name: names the score change in the result (``"<score_name>_change"``).
        max_changed_fraction: share of decisions allowed to change (0: none).

    Returns:
        ``max_probability_change``, ``<score_name>_change``, ``decisions_changed`` and ``lossless``
        (score change below :data:`SCORE_TOLERANCE` and no more decisions changed than allowed).
    """
    model.load_state_dict(rounded_to_fp16(state))
    p16 = probabilities()
    model.load_state_dict(state)
    p32 = probabilities()
    score_change = abs(score(p16) - score(p32))
    decisions = decide(p32)
    changed = int((decide(p16) != decisions).sum())
    return {
        "max_probability_change": float(np.abs(p16 - p32).max()) if len(p32) else 0.0,
        f"{score_name}_change": score_change,
        "decisions_changed": changed,
        "lossless": score_change < SCORE_TOLERANCE and changed <= max_changed_fraction * decisions.size,
    }
