"""The quality gate's rules as plain data, for the offline page's ``gate.js`` (``chestlens export web``
writes them into the build as ``gate.json``): the thresholds and word lists of :mod:`chestlens.pipeline.
gate`, the feature sizes and the numbers of the view model (:mod:`chestlens.pipeline.view`), the colour
rule of :mod:`chestlens.io.colour` and the screener's working-image factor. Taken from the modules
themselves, so a change there changes the next build; the CLI hands them to the export layer, which sits
below this one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chestlens.io.colour import CHANNEL_TOLERANCE, COLOUR_PIXEL_FRACTION
from chestlens.pipeline import gate, view
from chestlens.pipeline.screener import WORKING_IMAGE_FACTOR

#: The constants of :mod:`chestlens.pipeline.gate` that ``gate.js`` follows, under their Python names.
GATE_CONSTANTS = (
    "ACCEPTED_MODALITIES",
    "NEUTRAL_MODALITIES",
    "MODALITY_NAMES",
    "CHEST_WORDS",
    "OTHER_PART_WORDS",
    "NON_FRONTAL_VIEWS",
    "MIN_SIDE_PX",
    "MIN_SPREAD_UNIT",
    "MIN_GREY_LEVELS",
    "MIN_SPREAD_HU",
    "LUNG_AREA_RANGE",
    "MIN_LUNG_CONFIDENCE",
    "MAX_OUTLINE_COMPLEXITY",
    "MIN_LUNG_EXTENT",
    "MIN_LUNG_SOLIDITY",
    "MAX_LUNG_CENTRE_ROW",
    "_MAIN_COMPONENT_SHARE",
)
#: The constants of :mod:`chestlens.pipeline.view` (feature sizes) that ``gate.js`` follows.
VIEW_CONSTANTS = ("THUMBNAIL", "FEATURE_GRID", "PROFILE", "GRADIENT_CELLS", "GRADIENT_BINS")
VIEW_MODEL_KEYS = ("mean", "scale", "weights", "bias", "threshold", "description")


def _plain(value: Any) -> Any:
    """JSON's view of a constant: sets as sorted lists, tuples as lists."""
    return json.loads(json.dumps(sorted(value) if isinstance(value, frozenset | set) else value))


def browser_gate_rules() -> dict[str, Any]:
    """``{"gate": {...}, "view": {..., "model": {...}, "ct_picture_model": {...}}, "colour": {...},
    "working_image_factor": int}``."""

    def stored(path: Path) -> dict[str, Any]:
        model = json.loads(path.read_text(encoding="utf-8"))
        return {key: model[key] for key in VIEW_MODEL_KEYS}

    return {
        "gate": {name: _plain(getattr(gate, name)) for name in GATE_CONSTANTS},
        "view": {
            **{name: _plain(getattr(view, name)) for name in VIEW_CONSTANTS},
            "model": stored(view.VIEW_MODEL),
            "ct_picture_model": stored(view.CT_PICTURE_MODEL),
        },
        "colour": {"CHANNEL_TOLERANCE": CHANNEL_TOLERANCE, "COLOUR_PIXEL_FRACTION": COLOUR_PIXEL_FRACTION},
        "working_image_factor": WORKING_IMAGE_FACTOR,
    }
