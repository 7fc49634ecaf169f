"""The labelled CT slices of COVID-CT-MD: Hounsfield-unit slices with their "infection present" labels.

Used by ``chestlens train regional`` (training data) and by the evaluation of regional bundles
(:mod:`chestlens.evaluate.kinds`), so both read the same slices in the same order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chestlens.data.registry import load_samples
from chestlens.data.sources.covid_ct_md import SOURCE as CT_MD
from chestlens.data.sources.covid_ct_md import slice_labels
from chestlens.errors import ChestlensInputError
from chestlens.io import read_image

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LabelledSlices:
    """Slices of one or more series, in series order then slice order (inferior to superior).

    Attributes:
        pixels: per slice, Hounsfield units ``(rows, cols)`` float.
        infected: ``(N,)`` bool slice labels (True: infection present on the slice).
        patient_of: ``(N,)`` the patient id of each slice.
        patients: the patients, sorted.
    """

    pixels: list[np.ndarray]
    infected: np.ndarray
    patient_of: np.ndarray
    patients: list[str]


def labelled_slices(root: Path, patients: tuple[str, ...] = ()) -> LabelledSlices:
    """Every COVID-CT-MD series under ``root`` that has slice labels (of ``patients`` only, unless
    empty; an unknown patient id is a one-line error)."""
    pixels, labels, patient_of = [], [], []
    samples = load_samples(root, [CT_MD])
    if missing := set(patients) - {sample.patient_id for sample in samples}:
        raise ChestlensInputError(root, f"no COVID-CT-MD series of patient(s) {', '.join(sorted(missing))}")
    for sample in samples:
        if patients and sample.patient_id not in patients:
            continue
        try:
            truth = [label.infected for label in slice_labels(sample)]
        except ChestlensInputError as error:
            log.info("skipping %s: %s", sample.path.name, error.reason)
            continue
        volume = read_image(sample.path).pixels
        if len(volume) != len(truth):
            raise ChestlensInputError(sample.path, f"{len(volume)} slices but {len(truth)} slice labels")
        pixels += list(volume)
        labels += truth
        patient_of += [sample.patient_id] * len(truth)
    if not labels:
        raise ChestlensInputError(root, "no COVID-CT-MD series with slice labels found")
    return LabelledSlices(pixels, np.asarray(labels, bool), np.asarray(patient_of), sorted(set(patient_of)))
