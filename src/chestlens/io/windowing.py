"""CT windowing: Hounsfield units to display values in ``[0, 1]``.

A window ``(center, width)`` maps ``center - width/2`` HU to 0 and ``center + width/2`` HU to 1,
linearly, clipping outside. Presets are in :data:`WINDOWS`.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

#: Named CT window presets, ``name -> (center HU, width HU)``.
WINDOWS: MappingProxyType[str, tuple[float, float]] = MappingProxyType(
    {
        "lung": (-600.0, 1500.0),
        "mediastinum": (40.0, 400.0),
    }
)


def apply_window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map HU (any shape) through the window ``(center, width)`` to float32 in ``[0, 1]``, same shape."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low = center - width / 2.0
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(width)
    return np.clip(out, 0.0, 1.0, out=out)


def lung_window(hu: np.ndarray) -> np.ndarray:
    """Lung window (center -600 HU, width 1500 HU) -> float32 in ``[0, 1]``."""
    return apply_window(hu, *WINDOWS["lung"])


def mediastinum_window(hu: np.ndarray) -> np.ndarray:
    """Mediastinum / soft-tissue window (center 40 HU, width 400 HU) -> float32 in ``[0, 1]``."""
    return apply_window(hu, *WINDOWS["mediastinum"])
