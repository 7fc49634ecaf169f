"""Adapters for public chest imaging datasets kept in their original layout, one module per dataset.

Every module registers a :class:`~chestlens.data.registry.SourceAdapter` on import and exposes
``detect(folder) -> bool`` and ``load(folder, **filters) -> list[Sample]``. Conventions shared by all:

* ``uid`` is ``"<source>/<path relative to the dataset folder>"`` (POSIX separators), plus
  ``#<suffix>`` where one file yields several samples.
* ``patient_id`` is ``"<namespace>:<id>"`` (:func:`patient_namespace`); the namespace is the dataset
  that *owns* the id, so images that several datasets re-use (V7 and GeneralBlockchain re-annotate
  ieee8023 images) or take from one patient register (radiopaedia rows of ieee8023) carry the
  ieee8023 id (``"ieee8023:285"``) and link to the same person.
* ``findings`` keep the source's own label strings verbatim (trimmed); :mod:`chestlens.data.tasks` maps
  them to task classes.
* ``sex`` is ``"M"``/``"F"``; ``age`` is in years (float); ``view`` is the source's projection string,
  trimmed, upper-cased only where the source writes lower case (Hannover ``ap`` -> ``AP``).
* ``extra["image_key"]`` names the underlying picture across datasets (``"ieee8023:<filename>"``,
  ``"hannover:<image_id>"``) and ``extra["patient_aliases"]`` lists other ids (``|``-separated) the
  adapter merged into ``patient_id``; :mod:`chestlens.data.linking` uses both to link patients across
  sources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from PIL import Image

from chestlens.errors import ChestlensInputError


def read_table(path: Path, required: Iterable[str], encoding: str = "utf-8-sig") -> pd.DataFrame:
    """Read a metadata CSV with every value as a string (blank cells are ``""``, never NaN).

    ``encoding`` is the file's text encoding (default UTF-8 with or without BOM; Figure 1 writes cp1252).

    Raises:
        ChestlensInputError: the file is missing, unparsable, or lacks a ``required`` column.
    """
    if not path.is_file():
        raise ChestlensInputError(path, "metadata file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ChestlensInputError(path, f"cannot parse CSV: {exc}") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ChestlensInputError(path, f"missing column(s) {', '.join(missing)}")
    return table


def csv_header(path: Path) -> list[str]:
    """Column names of a CSV's first line (``[]`` if unreadable); cheap, for ``detect``."""
    try:
        with path.open(encoding="utf-8-sig", errors="replace") as handle:
            line = handle.readline()
    except OSError:
        return []
    return [c.strip().strip('"') for c in line.split(",")]


def sample_uid(source: str, folder: Path, path: Path) -> str:
    """``"<source>/<path relative to folder>"`` with POSIX separators."""
    return f"{source}/{path.relative_to(folder).as_posix()}"


def image_size(path: Path) -> tuple[int, int]:
    """``(rows, cols)`` of a PNG/JPEG from its header, without decoding pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except OSError as exc:
        raise ChestlensInputError(path, f"cannot read image header: {exc}") from None
    return height, width


def patient_namespace(patient_id: str) -> str:
    """The dataset that owns a patient id: the part before the first ``:`` (``"ieee8023:350"`` ->
    ``"ieee8023"``, also for radiopaedia, V7 and GeneralBlockchain samples); ``""`` without one.

    Samples of different sources with equal ``patient_id`` are one patient for
    :mod:`chestlens.data.linking` and :mod:`chestlens.data.splits`.
    """
    namespace, separator, _ = patient_id.partition(":")
    return namespace if separator else ""


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers numerically (``"ieee8023:97" < "ieee8023:178"``)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text))
