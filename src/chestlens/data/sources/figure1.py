"""Figure 1 COVID-19 Chest X-ray Dataset Initiative (agchung/Figure1-COVID-chestxray-dataset, COVID-Net).

Layout: ``<folder>/metadata.csv`` (columns ``patientid, offset, sex, age, finding, survival,
temperature, pO2 saturation, view, modality, artifacts/distortion, notes``) and
``<folder>/images/<patientid>.jpg`` or ``.png``. There is no file-name column: the image is found by
its stem, the row's ``patientid``. The CSV is Windows-1252 text, not UTF-8 (``0xB0`` degree sign,
``0x92`` apostrophe), and is read as such (:data:`ENCODING`).

Labels (``finding``): ``COVID-19``, ``No finding``, ``Pneumonia`` or blank. Blank means unlabelled
(its notes mostly describe a COVID-19 case), *not* negative: the sample is kept with ``findings=()``,
so no task labels it. Images were submitted by clinicians through the Figure 1 app: many hospitals,
mostly adults, often phone photographs or screenshots of films, some cropped or annotated.

Patients: ``patient_id`` = ``figure1:<patientid without its trailing letter>`` (``COVID-00003a`` and
``COVID-00003b`` -> ``figure1:COVID-00003``); ``COVID-00040a`` (``No finding``, a year earlier) and
``COVID-00040b`` (blank) are one patient. The raw id stays in ``extra["patientid"]``. Known quirk:
``COVID-00033.jpg`` and ``COVID-00037.jpg`` are one picture re-encoded under two patient ids; metadata
cannot tell, the near-duplicate check (``chestlens data check``) finds and links them.

Fields: ``view`` as written (``AP erect``, ``AP``, ``PA``, often blank); ``sex`` from ``M``/``F``;
``age`` in years when the cell is a number, else None with the text in ``extra["age_text"]``
(``50+``, ``early 40s``). ``extra`` also holds ``finding`` (raw), ``notes`` and ``image_key``
(``figure1:<file name>``). Rows without an image are skipped.
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
from chestlens.io.sniff import PICTURE_SUFFIXES

SOURCE = "figure1"
FOLDER = "figure1-covid-chestxray-dataset"
METADATA = "metadata.csv"
ENCODING = "cp1252"
REQUIRED_COLUMNS = ("patientid", "finding", "view")
# Columns naming the image file in the sibling layouts (ieee8023, Actualmed); Figure 1 has neither.
_FILE_COLUMNS = frozenset({"filename", "imagename"})
_TRAILING_LETTER = re.compile(r"^(.*\d)[A-Za-z]$")

logger = logging.getLogger(__name__)


def detect(folder: Path) -> bool:
    """``metadata.csv`` with ``patientid``/``finding``/``notes`` and no file-name column, next to
    ``images/``."""
    header = set(csv_header(folder / METADATA))
    return (
        {"patientid", "finding", "notes"} <= header
        and not header & _FILE_COLUMNS
        and (folder / "images").is_dir()
    )


def patient_of(patientid: str) -> str:
    """The patient of a row: ``figure1:<patientid>`` minus a letter after its number
    (``COVID-00003b`` -> ``figure1:COVID-00003``)."""
    raw = patientid.strip()
    match = _TRAILING_LETTER.match(raw)
    return f"{SOURCE}:{match.group(1) if match else raw}"


def _images(folder: Path) -> dict[str, Path]:
    """File stem -> image path in ``images/`` (the first in name order where stems repeat)."""
    index: dict[str, Path] = {}
    for path in sorted((folder / "images").iterdir()):
        if path.suffix.lower() in PICTURE_SUFFIXES:
            index.setdefault(path.stem, path)
    return index


def _extra(row: dict[str, str], path: Path, age: float | None) -> dict[str, str]:
    extra = {"finding": row["finding"].strip(), "patientid": row["patientid"].strip()}
    extra["image_key"] = f"{SOURCE}:{path.name}"
    notes, age_text = row.get("notes", "").strip(), row.get("age", "").strip()
    if notes:
        extra["notes"] = notes
    if age is None and age_text:
        extra["age_text"] = age_text
    return extra


def load(folder: Path) -> list[Sample]:
    """One sample per ``metadata.csv`` row whose ``images/<patientid>.<jpg|png>`` exists, in row order.

    Raises:
        ChestlensInputError: missing or undecodable ``metadata.csv``, missing columns, or a blank patientid.
    """
    csv_path = folder / METADATA
    table = read_table(csv_path, REQUIRED_COLUMNS, encoding=ENCODING)
    images = _images(folder)
    samples = []
    for number, row in enumerate(table.to_dict("records"), start=1):
        patientid = row["patientid"].strip()
        if not patientid:
            raise ChestlensInputError(csv_path, f"data row {number}: empty patientid")
        path = images.get(patientid)
        if path is None:
            continue
        finding = row["finding"].strip()
        age = parse_age(row.get("age", ""))
        samples.append(
            Sample(
                source=SOURCE,
                uid=sample_uid(SOURCE, folder, path),
                path=path,
                patient_id=patient_of(patientid),
                findings=(finding,) if finding else (),
                modality="xray",
                view=row["view"].strip() or None,
                sex=parse_sex(row.get("sex", "")),
                age=age,
                extra=_extra(row, path, age),
            )
        )
    logger.debug("%s: %d of %d rows have an image", folder, len(samples), len(table))
    return samples


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="Figure 1 app: metadata.csv (cp1252) + images/<patientid>.<jpg|png> (mostly COVID-19)",
        detect=detect,
        load=load,
    )
)
