"""The labelled CT series of a data root, screened once for the study classifier.

``chestlens train study`` fits on these and ``chestlens evaluate STUDY_BUNDLE --data ROOT`` scores on
them: both screen each series with the default CT lesion pipeline (the HU lung rule and one CT lesion
segmenter, no classifier) and read the series' ``lesions.features``
(:func:`chestlens.pipeline.study_features.series_lesion_features`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from chestlens.data.registry import load_samples
from chestlens.data.tasks import map_label
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.study_eval import StudySeries
from chestlens.pipeline.case import read_case
from chestlens.pipeline.screener import Screener

log = logging.getLogger(__name__)

#: The task whose labels a study bundle predicts.
STUDY_TASK = "ct3"
#: The CT lesion segmenter of the default pipeline.
DEFAULT_LESION_BUNDLE = "lesions-ct-segmenter"


def _short(patient_id: str) -> str:
    return patient_id.split(":", 1)[-1]


def labelled_ct_series(root: Path, patients: Sequence[str] = ()) -> list[tuple[str, Path, str]]:
    """``(patient, series folder, ct3 label)`` of every CT series under ``root`` with a ``ct3`` label, in
    patient order; ``patients`` (ids with or without the source prefix, e.g. ``P001`` or
    ``covid_ct_md:P001``) keeps those only, and an unknown one is a one-line error."""
    found = []
    for sample in load_samples(Path(root)):
        if sample.modality != "ct" or not sample.path.is_dir():
            continue
        label = map_label(STUDY_TASK, sample)
        if label is not None:
            found.append((sample.patient_id, sample.path, label))
    if patients:
        wanted = set(patients)
        missing = wanted - {p for p, _, _ in found} - {_short(p) for p, _, _ in found}
        if missing:
            raise ChestlensInputError(
                root, f"no labelled CT series of patient(s) {', '.join(sorted(missing))}"
            )
        found = [row for row in found if row[0] in wanted or _short(row[0]) in wanted]
    if not found:
        raise ChestlensInputError(root, "no labelled CT series (ct3: COVID-19 / CAP / normal) found")
    return sorted(found, key=lambda row: row[0])


def screen_study_series(
    root: Path,
    lesion_bundle: str = DEFAULT_LESION_BUNDLE,
    patients: Sequence[str] = (),
    regional: str | Path | None = None,
) -> list[StudySeries]:
    """Screen every labelled CT series under ``root`` (of ``patients`` only, unless empty) with the HU
    lung rule and ``lesion_bundle``; one :class:`StudySeries` each with its ``lesions.features``, plus
    the :data:`~chestlens.models.study.REGIONAL_FEATURES` of the ``regional`` bundle when one is given
    (PyTorch), read from the same HU slices as screening reads them."""
    series = labelled_ct_series(root, patients)
    screener = Screener(classifier=None, lungs=None, lesions=[lesion_bundle])
    reader = None
    if regional is not None:
        from chestlens.models.regional import RegionalSeriesReader

        reader = RegionalSeriesReader.load(regional)
    rows = []
    for patient, folder, label in series:
        start = time.perf_counter()
        image = read_case(folder).image
        result = screener.screen(image, name=folder.name).result
        features = result.lesions.features if result.lesions is not None else None
        if features is None:
            reason = result.gate.reason if not result.gate.accepted else "; ".join(result.notes)
            raise ChestlensInputError(folder, f"no lesion features for this series ({reason})")
        values = {k: float(v) for k, v in features.model_dump().items()}
        if reader is not None:
            values.update(reader.series_features(list(image.pixels)))
        model = result.lesions.model  # type: ignore[union-attr]
        rows.append(
            StudySeries(
                patient=_short(patient),
                series=str(folder),
                label=label,
                features=values,
                lesion_model=f"{model.name} {model.version}",
            )
        )
        log.info("%s (%s): screened in %.0f s", patient, label, time.perf_counter() - start)
    return rows
