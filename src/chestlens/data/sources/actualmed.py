"""Actualmed COVID-19 chest X-rays (agchung/Actualmed-COVID-chestxray-dataset, COVID-Net): one hospital.

Layout: ``<folder>/metadata.csv`` (columns ``patientid, offset, sex, age, finding, survival,
temperature, pO2 saturation, view, modality, imagename, artifacts/distortion, notes``) and
``<folder>/images/<imagename>`` (PNG, named by DICOM SOP UID: ``CR.*`` computed radiography,
``DX.*`` digital radiography).

Labels (``finding``): ``COVID-19``; ``No finding`` (notes: "Negative (covid-19 viral infection is
excluded)"), i.e. COVID-negative, which :mod:`chestlens.data.tasks` counts as normal as COVIDx does;
blank (notes: "Inconclusive"). A blank finding is *not* a negative: the sample is kept with
``findings=()``, so no task labels it (like ieee8023 rows without a finding).

Why it matters: all images come from one institution in March-April 2020, so this is the one source
where COVID-19 and COVID-negative images share hospital and period. It carries a confound of its own:
COVID-19 images are mostly ``AP``, negatives mostly ``PA``; ``view`` keeps the ``view`` cell (trimmed)
so results can be stratified by projection (:func:`chestlens.data.summary.source_contrasts`).

Fields: ``patient_id`` = ``actualmed:<patientid>`` (``ANON91``); age and sex are empty upstream (parsed
if present). ``extra``: ``finding`` (raw cell), ``notes``, ``dicom_modality`` (``CR``/``DX`` from the
file name), ``date`` (``YYYY-MM-DD`` from the notes' "date taken (YYYYMMDD)"), ``image_key``
(``actualmed:<imagename>``; COVIDx re-publishes these files). Rows whose image is missing are skipped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from chestlens.data.fields import parse_age, parse_sex
from chestlens.data.records import Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.sources import csv_header, read_table, sample_uid
from chestlens.errors import ChestlensInputError

SOURCE = "actualmed"
FOLDER = "actualmed-covid-chestxray-dataset"
METADATA = "metadata.csv"
REQUIRED_COLUMNS = ("patientid", "finding", "view", "imagename")
_DATE = re.compile(r"date taken \(YYYYMMDD\):\s*(\d{4})(\d{2})(\d{2})")
_DICOM_MODALITY = re.compile(r"^(CR|DX)\.")

logger = logging.getLogger(__name__)


def detect(folder: Path) -> bool:
    """``metadata.csv`` with ``patientid``/``finding``/``imagename`` columns next to ``images/``."""
    header = set(csv_header(folder / METADATA))
    return {"patientid", "finding", "imagename"} <= header and (folder / "images").is_dir()


def _extra(row: dict[str, str], imagename: str) -> dict[str, str]:
    notes = row.get("notes", "").strip()
    extra = {"finding": row["finding"].strip(), "image_key": f"{SOURCE}:{imagename}"}
    if notes:
        extra["notes"] = notes
    if modality := _DICOM_MODALITY.match(imagename):
        extra["dicom_modality"] = modality.group(1)
    if date := _DATE.search(notes):
        extra["date"] = "-".join(date.groups())
    return extra


def load(folder: Path) -> list[Sample]:
    """One sample per ``metadata.csv`` row whose ``images/<imagename>`` exists, in row order.

    Raises:
        ChestlensInputError: missing ``metadata.csv``/columns, or a row without patientid/imagename.
    """
    csv_path = folder / METADATA
    table = read_table(csv_path, REQUIRED_COLUMNS)
    samples = []
    missing = 0
    for number, row in enumerate(table.to_dict("records"), start=1):
        patient, imagename = row["patientid"].strip(), row["imagename"].strip()
        if not patient or not imagename:
            raise ChestlensInputError(csv_path, f"data row {number}: empty patientid or imagename")
        path = folder / "images" / imagename
        if not path.is_file():
            missing += 1
            continue
        finding = row["finding"].strip()
        samples.append(
            Sample(
                source=SOURCE,
                uid=sample_uid(SOURCE, folder, path),
                path=path,
                patient_id=f"{SOURCE}:{patient}",
                findings=(finding,) if finding else (),
                modality="xray",
                view=row["view"].strip() or None,
                sex=parse_sex(row.get("sex", "")),
                age=parse_age(row.get("age", "")),
                extra=_extra(row, imagename),
            )
        )
    if missing:
        logger.debug("%s: %d row(s) of %s have no image", folder, missing, METADATA)
    return samples


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="Actualmed (one Spanish hospital): metadata.csv + images/ (COVID-19 vs COVID-negative)",
        detect=detect,
        load=load,
    )
)
