"""How much of a heatmap lies where it should (numpy only)."""

from __future__ import annotations

import numpy as np


def energy_inside(heatmap: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the heatmap's total mass inside ``mask`` (both ``(S, S)``, same grid); None if all zero."""
    total = float(heatmap.sum())
    return None if total <= 0 else float(heatmap[mask].sum() / total)
