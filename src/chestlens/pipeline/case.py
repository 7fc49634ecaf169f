"""One input on its way through the screening stages, and what a screening returns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chestlens.errors import ChestlensInputError
from chestlens.io import MedicalImage, read_image
from chestlens.io.raster import READ_MAX_SIDE
from chestlens.pipeline.schema import (
    Classification,
    Explanation,
    FailedInput,
    GateCheck,
    InputInfo,
    LesionSummary,
    LungMeasurement,
    ScreeningResult,
)

Source = str | Path | bytes | MedicalImage


@dataclass(slots=True)
class Screening:
    """A result plus the arrays its overlays are drawn from.

    ``heatmap``: class-activation map ``(S, S)`` in ``[0, 1]`` on the classifier grid; ``lung_mask``:
    bool, ``(S, S)`` on the segmenter grid for radiographs, ``(rows, cols)`` or ``(slices, rows, cols)``
    for CT; ``lesion_map``: uint8 label map (0 background, ``k`` = ``lesion_labels[k - 1]``) on the
    lesion segmenter grid, with a leading slice axis for CT series.
    """

    result: ScreeningResult
    image: MedicalImage
    heatmap: np.ndarray | None = None
    lung_mask: np.ndarray | None = None
    lesion_map: np.ndarray | None = None
    lesion_labels: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Case:
    """Work in progress on one image inside a batch (arrays as in :class:`Screening`).

    ``work``: radiographs only, the grey ``[0, 1]`` working image ``(h, w)`` that every model stage
    reads (:func:`chestlens.preprocess.resize.working_image`).
    """

    source: str
    image: MedicalImage
    timings: dict[str, float]
    checks: list[GateCheck] = field(default_factory=list)
    work: np.ndarray | None = None
    classification: Classification | None = None
    explanation: Explanation | None = None
    lungs: LungMeasurement | None = None
    lesions: LesionSummary | None = None
    heatmap: np.ndarray | None = None
    lung_mask: np.ndarray | None = None
    lesion_map: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_ct(self) -> bool:
        """CT in Hounsfield units (a slice or a series); everything else is screened as a radiograph."""
        return self.image.meta.pixel_unit == "HU"

    @property
    def modality(self) -> str:
        """``ct`` or ``xray``: which classifier and lesion segmenter apply."""
        return "ct" if self.is_ct else "xray"

    @property
    def rejected(self) -> bool:
        return any(not check.passed for check in self.checks)

    def add_time(self, stage: str, ms: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + ms


class Timer:
    """Milliseconds of a stage, shared equally by the cases of a batch."""

    def __init__(self, stage: str, cases: list[Case]) -> None:
        self.stage, self.cases = stage, cases

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        share = (time.perf_counter() - self.start) * 1000.0 / max(1, len(self.cases))
        for case in self.cases:
            case.add_time(self.stage, share)


def source_name(source: Source, name: str | None = None) -> str:
    """How a result names its input: ``name`` if given, else the path, else ``"<bytes>"``."""
    if name is not None:
        return name
    if isinstance(source, MedicalImage):
        return source.meta.source_path or "<image>"
    return "<bytes>" if isinstance(source, bytes) else str(source)


def read_case(source: Source, name: str | None = None) -> Case:
    """Decode one input (timed); unreadable input raises :class:`~chestlens.errors.ChestlensInputError`."""
    start = time.perf_counter()
    image = source if isinstance(source, MedicalImage) else read_image(source, max_side=READ_MAX_SIDE)
    return Case(source_name(source, name), image, {"read": (time.perf_counter() - start) * 1000.0})


def read_timed(source: Source) -> Case | FailedInput:
    """Decode one input for the batch stages; an unreadable one becomes a :class:`FailedInput`."""
    try:
        return read_case(source)
    except ChestlensInputError as error:
        return FailedInput(source=source_name(source), error=error.reason)


def input_info(case: Case) -> InputInfo:
    """The result's description of the input as read (no patient identity)."""
    meta, image = case.image.meta, case.image
    return InputInfo(
        source=case.source,
        format=meta.format,
        modality=meta.modality,
        body_part=meta.body_part,
        view=meta.view,
        rows=meta.rows,
        cols=meta.cols,
        n_slices=image.pixels.shape[0] if image.is_volume else 1,
        pixel_spacing_mm=meta.pixel_spacing_mm,
        patient_key=meta.patient_key,
        warnings=list(meta.warnings),
    )
