"""The sample record every dataset adapter yields, and the mask container they load.

A :class:`Sample` is plain, hashable metadata: it can be written to a split CSV and read back. Pixels
are loaded on demand with :func:`chestlens.io.read_image` (``sample.path``) and masks with
``sample.masks.load()`` where the source has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Modality = Literal["xray", "ct"]


@dataclass(frozen=True, slots=True)
class Masks:
    """Segmentation targets on the same pixel grid as the image.

    Attributes:
        layers: class name -> boolean array of shape ``(rows, cols)`` (``(slices, rows, cols)`` for
            series); classes may overlap (e.g. ``lung`` and ``ggo``).
        ignore: boolean array, True where the annotation is unknown and must not be scored
            (e.g. V7's grey 127 label), or None.
    """

    layers: Mapping[str, np.ndarray]
    ignore: np.ndarray | None = None


@runtime_checkable
class MaskSource(Protocol):
    """Something that can load a sample's masks on demand (kept lazy so records stay cheap)."""

    classes: tuple[str, ...]

    def load(self) -> Masks: ...


@dataclass(frozen=True, slots=True)
class Sample:
    """One image (or one CT series) of a dataset with its labels.

    Attributes:
        source: adapter name, e.g. ``"ieee8023"``, ``"kermany"``.
        uid: unique across all sources, ``"<source>/<path relative to the source root>"``
            (plus ``#<suffix>`` where one file yields several samples).
        path: image file, or the folder of a DICOM series.
        patient_id: patient group key, prefixed with the source (``"ieee8023:285"``). Ids the
            source knows to be one person are merged by the adapter.
        findings: the source's own labels for this image, verbatim (e.g. ``("COVID-19", "ARDS")``,
            ``("PNEUMONIA", "bacteria")``, ``("No Finding",)``); task mapping happens in
            :mod:`chestlens.data.tasks`.
        modality: ``"xray"`` or ``"ct"``.
        view: projection (``PA``, ``AP``, ``AP Supine``, ``L``) or ``axial`` for CT, if known.
        sex: ``"M"`` or ``"F"`` if known.
        age: age in years if known.
        masks: lazy mask loader, or None.
        boxes: bounding boxes ``(x0, y0, x1, y1, class_name)`` in pixel coordinates of the image
            file, if the source has boxes.
        extra: any other source fields worth keeping (strings only), e.g. ``{"offset": "3"}``.
            The training data path reads one key: ``"display_quarter_turns"``
            (:func:`display_quarter_turns`).
    """

    source: str
    uid: str
    path: Path
    patient_id: str
    findings: tuple[str, ...]
    modality: Modality
    view: str | None = None
    sex: str | None = None
    age: float | None = None
    masks: MaskSource | None = field(default=None, compare=False, hash=False)
    boxes: tuple[tuple[float, float, float, float, str], ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


DISPLAY_QUARTER_TURNS = "display_quarter_turns"


def display_quarter_turns(sample: Sample) -> int:
    """Clockwise quarter turns that bring ``sample``'s stored picture (and masks) to the radiological
    display (``extra["display_quarter_turns"]``, 0 when absent); training tensors are turned by it."""
    return int(sample.extra.get(DISPLAY_QUARTER_TURNS, "0")) % 4
