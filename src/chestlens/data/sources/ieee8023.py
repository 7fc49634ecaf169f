"""ieee8023 covid-chestxray-dataset (Cohen et al. 2020): ``metadata.csv`` + ``images/``.

Layout: ``<folder>/metadata.csv`` (June 2020 columns: ``patientid, offset, sex, age, finding, view,
modality, location, folder, filename, doi, url, license, ...``) and the images at
``<folder>/<folder column>/<filename>`` (``images/`` for every X-ray row).

One :class:`~chestlens.data.records.Sample` per image *file*: upstream lists a few files under two
patient ids (000001-24.jpg under 285 and 339), so there are more rows than files. Patient merging:

* a trailing letter is dropped (``350a``/``350b`` -> ``350``; also ``331a``/``331b``, which upstream
  gives a different sex and age: merging is the conservative choice for patient-level splits);
* ids that share a file are merged (285+339, 287+340 at upstream commit 584034a); the group keeps the
  smallest id and lists the others in ``extra["patient_aliases"]``; :func:`shared_file_patient_links`
  returns the raw pairs for split code;
* pixel-identical images under different ids (97 and 178 at 584034a) are *not* detected here; that is
  the near-duplicate detector's job.

``findings`` is the ``finding`` cell split on commas (``"COVID-19, ARDS"`` -> ``("COVID-19", "ARDS")``);
the raw cell is kept in ``extra["finding"]``. ``view`` is the ``view`` cell trimmed (``PA``, ``AP``,
``AP Supine``, ``L``). Rows whose image file is missing are skipped (logged at debug level; list them
with :func:`missing_images`). :func:`read_records` is shared with the V7 and GeneralBlockchain
adapters, which re-use ieee8023 images and metadata rows, and with the radiopaedia adapter
(:mod:`chestlens.data.sources.radiopaedia`), whose folder holds ieee8023 rows of one platform.

Detection: a folder in this format whose every row's ``url`` is on radiopaedia.org
(:func:`radiopaedia_only`) is the ``radiopaedia`` source, not this one.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from chestlens.data.fields import parse_age, parse_sex
from chestlens.data.records import MaskSource, Modality, Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.sources import csv_header, natural_key, read_table, sample_uid
from chestlens.errors import ChestlensInputError

SOURCE = "ieee8023"
FOLDER = "covid-chestxray-dataset"
METADATA = "metadata.csv"
REQUIRED_COLUMNS = ("patientid", "finding", "view", "modality", "filename")
MODALITIES: dict[str, Modality] = {"X-ray": "xray", "CT": "ct"}
# Columns copied into ``extra`` when not blank.
EXTRA_COLUMNS = (
    "offset",
    "survival",
    "intubated",
    "went_icu",
    "date",
    "location",
    "doi",
    "url",
    "license",
)
_TRAILING_LETTER = re.compile(r"^(\d+)[A-Za-z]$")
_HANNOVER_ID = re.compile(r"^[0-9a-f]{8}$")
RADIOPAEDIA_HOST = "radiopaedia.org"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image file of an ieee8023-format ``metadata.csv`` (rows naming the same file merged).

    Attributes:
        path: ``<csv folder>/<folder column>/<filename>``; may not exist.
        patient_id: canonical ``"ieee8023:<id>"`` after the merges described in the module docstring.
        finding: the raw ``finding`` cell of the first row naming the file.
        findings: ``finding`` split on commas, trimmed.
        modality: the raw ``modality`` cell (``X-ray``, ``CT``).
        extra: ``finding``, ``patientids`` (raw ids of every row naming the file, ``|``-joined),
            ``patient_aliases``, ``image_key`` and the non-blank :data:`EXTRA_COLUMNS`.
    """

    path: Path
    patient_id: str
    finding: str
    findings: tuple[str, ...]
    view: str | None
    modality: str
    sex: str | None
    age: float | None
    extra: dict[str, str]

    def to_sample(
        self,
        source: str,
        folder: Path,
        *,
        masks: MaskSource | None = None,
        boxes: tuple[tuple[float, float, float, float, str], ...] = (),
        extra: dict[str, str] | None = None,
    ) -> Sample:
        """The :class:`Sample` of this image for ``source`` (ieee8023 or a dataset re-using its images)."""
        return Sample(
            source=source,
            uid=sample_uid(source, folder, self.path),
            path=self.path,
            patient_id=self.patient_id,
            findings=self.findings,
            modality=MODALITIES[self.modality],
            view=self.view,
            sex=self.sex,
            age=self.age,
            masks=masks,
            boxes=boxes,
            extra=self.extra if extra is None else extra,
        )


def canonical_patientid(raw: str) -> str:
    """Upstream ``patientid`` without a trailing letter (``"350a"`` -> ``"350"``), trimmed."""
    raw = raw.strip()
    match = _TRAILING_LETTER.match(raw)
    return match.group(1) if match else raw


def image_key(filename: str, location: str) -> str:
    """Cross-dataset name of the picture: ``"hannover:<image_id>"`` for Hannover Medical School images
    (upstream re-publishes ml-workgroup images as ``<image_id>.jpg``), else ``"ieee8023:<filename>"``."""
    stem = Path(filename).stem
    if "Hannover" in location and _HANNOVER_ID.match(stem):
        return f"hannover:{stem}"
    return f"{SOURCE}:{filename}"


def _rows(csv_path: Path) -> pd.DataFrame:
    table = read_table(csv_path, REQUIRED_COLUMNS)
    for column in ("patientid", "filename"):
        blank = table.index[table[column].str.strip() == ""]
        if len(blank):
            raise ChestlensInputError(csv_path, f"data row {blank[0] + 1}: empty {column!r}")
    return table


def _patient_components(table: pd.DataFrame) -> dict[str, str]:
    """Canonical id -> representative (smallest) id, merging ids that share a file."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            node = parent[node]
        return node

    ids = table["patientid"].map(canonical_patientid)
    for _, group in ids.groupby(table["filename"].str.strip(), sort=False):
        roots = sorted({find(i) for i in group}, key=natural_key)
        for other in roots[1:]:
            parent[other] = roots[0]
    return {node: find(node) for node in list(parent)}


def read_records(csv_path: Path) -> list[ImageRecord]:
    """Every image file named by an ieee8023-format ``metadata.csv``, in first-row order.

    Raises:
        ChestlensInputError: missing file or column, or a row without ``patientid``/``filename``.
    """
    table = _rows(csv_path)
    representative = _patient_components(table)
    members: dict[str, list[str]] = {}
    for node, root in representative.items():
        members.setdefault(root, []).append(node)
    records = []
    for filename, rows in table.groupby(table["filename"].str.strip(), sort=False):
        first = rows.iloc[0]
        root = representative[canonical_patientid(first["patientid"])]
        aliases = sorted((m for m in members[root] if m != root), key=natural_key)
        folder = first.get("folder", "").strip() or "images"
        extra = {c: first[c].strip() for c in EXTRA_COLUMNS if c in first and first[c].strip()}
        extra["finding"] = first["finding"].strip()
        extra["patientids"] = "|".join(dict.fromkeys(r.strip() for r in rows["patientid"]))
        extra["image_key"] = image_key(filename, first.get("location", ""))
        if aliases:
            extra["patient_aliases"] = "|".join(f"{SOURCE}:{a}" for a in aliases)
        records.append(
            ImageRecord(
                path=csv_path.parent / folder / filename,
                patient_id=f"{SOURCE}:{root}",
                finding=first["finding"].strip(),
                findings=tuple(p.strip() for p in first["finding"].split(",") if p.strip()),
                view=first["view"].strip() or None,
                modality=first["modality"].strip(),
                sex=parse_sex(first.get("sex", "")),
                age=parse_age(first.get("age", "")),
                extra=extra,
            )
        )
    return records


def is_metadata_layout(folder: Path) -> bool:
    """``metadata.csv`` with ``patientid``/``finding``/``filename`` columns next to ``images/``, and no
    GeneralBlockchain ``structure.csv`` (that layout re-uses the same metadata format)."""
    header = csv_header(folder / METADATA)
    return (
        {"patientid", "finding", "filename"} <= set(header)
        and (folder / "images").is_dir()
        and not (folder / "structure.csv").exists()
    )


def radiopaedia_only(csv_path: Path) -> bool:
    """True when an ieee8023-format CSV has rows and every row's ``url`` is on radiopaedia.org.

    False for a missing or unreadable file, a CSV without ``url`` column, or any blank or other URL.
    Reads the whole file (ieee8023 ``metadata.csv`` is under a megabyte).
    """
    try:
        with csv_path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
            hosts = {urlsplit(row.get("url") or "").hostname or "" for row in csv.DictReader(handle)}
    except (OSError, csv.Error, ValueError):
        return False
    return bool(hosts) and all(h == RADIOPAEDIA_HOST or h.endswith(f".{RADIOPAEDIA_HOST}") for h in hosts)


def detect(folder: Path) -> bool:
    """:func:`is_metadata_layout`, unless every row comes from radiopaedia.org (:func:`radiopaedia_only`:
    that folder is the ``radiopaedia`` source)."""
    return is_metadata_layout(folder) and not radiopaedia_only(folder / METADATA)


def missing_images(folder: Path) -> list[str]:
    """Image paths (relative to ``folder``) that ``metadata.csv`` names but that do not exist."""
    return [
        r.path.relative_to(folder).as_posix() for r in read_records(folder / METADATA) if not r.path.is_file()
    ]


def shared_file_patient_links(folder: Path) -> list[tuple[str, str]]:
    """Pairs of raw patient ids (``"ieee8023:<patientid>"``) that ``metadata.csv`` lists for one file.

    At upstream commit 584034a: (285, 339) and (287, 340). Sorted, each pair in natural order.
    """
    table = _rows(folder / METADATA)
    links = set()
    for _, ids in table["patientid"].str.strip().groupby(table["filename"].str.strip()):
        unique = sorted(set(ids), key=natural_key)
        links.update(
            (f"{SOURCE}:{a}", f"{SOURCE}:{b}") for i, a in enumerate(unique) for b in unique[i + 1 :]
        )
    return sorted(links, key=lambda pair: (natural_key(pair[0]), natural_key(pair[1])))


def _allowed(value: str, wanted: Iterable[str] | None) -> bool:
    return wanted is None or value in set(wanted)


def samples_from(
    folder: Path,
    source: str,
    *,
    views: Iterable[str] | None = None,
    modalities: Iterable[str] | None = ("X-ray",),
    findings: Iterable[str] | None = None,
) -> list[Sample]:
    """Samples named ``source`` for every image file of ``folder/metadata.csv`` that exists, filtered.

    Shared by :func:`load` and the adapters of folders in this format (radiopaedia); the filters are
    those of :func:`load`.
    """
    samples = []
    missing = 0
    for record in read_records(folder / METADATA):
        if not record.path.is_file():
            missing += 1
            continue
        if (
            record.modality not in MODALITIES
            or not _allowed(record.modality, modalities)
            or not _allowed(record.view or "", views)
            or not _allowed(record.finding, findings)
        ):
            continue
        samples.append(record.to_sample(source, folder))
    if missing:
        logger.debug("%s: %d image file(s) named in %s are missing", folder, missing, METADATA)
    return samples


def load(
    folder: Path,
    *,
    views: Iterable[str] | None = None,
    modalities: Iterable[str] | None = ("X-ray",),
    findings: Iterable[str] | None = None,
) -> list[Sample]:
    """Samples for every image file that exists, optionally filtered.

    Filters compare the trimmed cell text exactly, like the PyImageSearch recipe
    (``findings=["COVID-19"], views=["PA"]``); note that ``"COVID-19"`` does not match the cell
    ``"COVID-19, ARDS"``: pass both to keep both. ``modalities`` defaults to X-ray rows; ``None`` keeps
    X-ray and CT rows (other modality values are always skipped).
    """
    return samples_from(folder, SOURCE, views=views, modalities=modalities, findings=findings)


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="ieee8023 covid-chestxray-dataset: metadata.csv + images/ (COVID-19, other pneumonias)",
        detect=detect,
        load=load,
    )
)
