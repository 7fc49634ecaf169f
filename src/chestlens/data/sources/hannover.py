"""Hannover Medical School COVID-19 image repository (ml-workgroup): ``data.csv`` + ``png/``.

Layout: ``<folder>/data.csv`` (``patient_id, image_id, sex, age, ..., modality, projection, ...``) and
``<folder>/png/<image_id>.png`` (upstream's downscaled copies of the NIfTI originals).

Labels: ``data.csv`` has no diagnosis column; the readme describes every patient as a COVID-19 case,
so every image gets ``findings=("COVID-19",)`` with ``extra["label_source"]`` saying so. An image of a
COVID-19 patient need not show findings: ieee8023 (commit 584034a, which re-published 92 of these
images) labels some of them ``No Finding``; those known ids get ``extra["ieee8023_finding"] =
"No Finding"`` and :mod:`chestlens.data.tasks` leaves them out of the X-ray classification tasks.

Fields: ``sex`` from ``m``/``f``/``w``; ``age`` is redacted upstream (None unless numeric);
``view`` is ``projection`` upper-cased (``ap`` -> ``AP``); the DICOM modality (``CR``/``DX``) and the
admission offset (days relative to the exam) go to ``extra``. Rows whose PNG is missing are skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

from chestlens.data.fields import parse_age, parse_sex
from chestlens.data.records import Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.sources import csv_header, read_table, sample_uid
from chestlens.errors import ChestlensInputError

SOURCE = "hannover"
FOLDER = "ml-workgroup-covid-19-image-repository"
METADATA = "data.csv"
REQUIRED_COLUMNS = ("patient_id", "image_id", "sex", "projection")
LABEL_SOURCE = "dataset description: every patient is a COVID-19 case (image may show no findings)"
# Hannover image ids that ieee8023@584034a labels "No Finding" (rows at offsets -21 to -28 days there);
# upstream lists 8, these 5 are the ones documented for this repository's commit.
IEEE8023_NO_FINDING = frozenset({"f6575117", "ac4f6e4e", "7afaaccc", "19073f37", "8fc103ca"})

logger = logging.getLogger(__name__)


def detect(folder: Path) -> bool:
    """``data.csv`` with ``patient_id``/``image_id``/``projection`` columns next to ``png/``."""
    header = set(csv_header(folder / METADATA))
    return {"patient_id", "image_id", "projection"} <= header and (folder / "png").is_dir()


def load(folder: Path) -> list[Sample]:
    """One sample per ``data.csv`` row whose ``png/<image_id>.png`` exists.

    Raises:
        ChestlensInputError: missing ``data.csv``/columns, or a row without ``patient_id``/``image_id``.
    """
    csv_path = folder / METADATA
    table = read_table(csv_path, REQUIRED_COLUMNS)
    samples = []
    missing = 0
    for number, row in enumerate(table.to_dict("records"), start=1):
        patient, image_id = row["patient_id"].strip(), row["image_id"].strip()
        if not patient or not image_id:
            raise ChestlensInputError(csv_path, f"data row {number}: empty patient_id or image_id")
        path = folder / "png" / f"{image_id}.png"
        if not path.is_file():
            missing += 1
            continue
        extra = {"label_source": LABEL_SOURCE, "image_key": f"{SOURCE}:{image_id}"}
        for column, key in (("modality", "dicom_modality"), ("admission_offset", "admission_offset")):
            if row.get(column, "").strip():
                extra[key] = row[column].strip()
        if image_id in IEEE8023_NO_FINDING:
            extra["ieee8023_finding"] = "No Finding"
        samples.append(
            Sample(
                source=SOURCE,
                uid=sample_uid(SOURCE, folder, path),
                path=path,
                patient_id=f"{SOURCE}:{patient}",
                findings=("COVID-19",),
                modality="xray",
                view=row["projection"].strip().upper() or None,
                sex=parse_sex(row["sex"]),
                age=parse_age(row.get("age", "")),
                extra=extra,
            )
        )
    if missing:
        logger.debug("%s: %d row(s) of %s have no PNG", folder, missing, METADATA)
    return samples


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="Hannover Medical School COVID-19 image repository: data.csv + png/ (all COVID-19)",
        detect=detect,
        load=load,
    )
)
