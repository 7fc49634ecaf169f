"""V7 Labs lung masks for ieee8023 chest X-rays (v7labs/covid-19-xray-dataset).

Layout::

    <folder>/covid-19-xray-dataset/annotations/all-images-semantic-masks/<v7 id>.png
    <folder>/covid-19-xray-dataset/annotations/*.zip        (Darwin JSON, <v7 id>.json; or loose .json)
    <folder>/covid-chestxray-dataset/metadata.csv + images/ (ieee8023 rows and images)

Mask -> image mapping: mask files are named by V7's numeric image id. The Darwin annotation JSON of the
same id (``covid-only.zip``: ``1676192.json``, whose ``image.url`` also carries ``/images/1676192/``)
gives ``image.original_filename``, the ieee8023 ``filename``; that is the mapping used. Masks without
an annotation JSON, or whose image has no metadata row, are skipped (debug log), never guessed.

Mask values: 255 lung (the lung behind the heart included), 127 ignore (unknown, not scored),
0 background. Loaded lazily by :class:`LungMask` as layer ``lung`` plus ``ignore``, resized to the
image grid with nearest neighbour when sizes differ.

Patients: the metadata rows are ieee8023 rows, so ``patient_id`` is the ieee8023 id with the ieee8023
adapter's merge rules (``"ieee8023:219"``); ``extra["image_key"]`` is ``"hannover:<image_id>"`` for the
Hannover images that ieee8023 re-publishes, so :func:`chestlens.data.linking.link_samples` links
them to the Hannover patient.
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from chestlens.data.records import Masks, Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.sources import image_size
from chestlens.data.sources.ieee8023 import MODALITIES, read_records
from chestlens.errors import ChestlensInputError

SOURCE = "v7_lungs"
FOLDER = "v7labs-ieee8023-cxr-lung-masks"
ANNOTATIONS = Path("covid-19-xray-dataset/annotations")
MASKS = ANNOTATIONS / "all-images-semantic-masks"
METADATA = Path("covid-chestxray-dataset/metadata.csv")
MASK_CLASSES = ("lung",)
LUNG_MIN = 192  # mask value >= 192: lung (stored 255)
IGNORE_MIN = 64  # 64 <= value < 192: ignore (stored 127)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LungMask:
    """Lazy V7 lung mask: ``load()`` -> ``Masks(layers={"lung": (rows, cols) bool}, ignore=bool)``."""

    mask_path: Path
    image_path: Path
    classes: tuple[str, ...] = MASK_CLASSES

    def load(self) -> Masks:
        with Image.open(self.mask_path) as image:
            mask = image.convert("L")
            rows, cols = image_size(self.image_path)
            if mask.size != (cols, rows):
                mask = mask.resize((cols, rows), Image.Resampling.NEAREST)
            values = np.asarray(mask)
        return Masks(layers={"lung": values >= LUNG_MIN}, ignore=(values >= IGNORE_MIN) & (values < LUNG_MIN))


def detect(folder: Path) -> bool:
    """The V7 semantic-mask folder next to an ieee8023 ``metadata.csv``."""
    return (folder / MASKS).is_dir() and (folder / METADATA).is_file()


def _annotation_documents(folder: Path) -> list[tuple[str, bytes]]:
    """``(v7 id, JSON bytes)`` from every ``*.zip`` and loose ``*.json`` under the annotations folder."""
    documents = []
    for path in sorted((folder / ANNOTATIONS).rglob("*")):
        if path.suffix == ".json":
            documents.append((path.stem, path.read_bytes()))
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    if name.endswith(".json") and not name.startswith("__MACOSX"):
                        documents.append((Path(name).stem, archive.read(name)))
    return documents


def mask_filenames(folder: Path) -> dict[str, str]:
    """V7 image id (mask file stem) -> ieee8023 image filename, from the Darwin annotation JSONs.

    Raises:
        ChestlensInputError: an unreadable JSON, or two JSONs giving one id different filenames.
    """
    mapping: dict[str, str] = {}
    for v7_id, raw in _annotation_documents(folder):
        try:
            filename = json.loads(raw)["image"]["original_filename"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ChestlensInputError(
                folder / ANNOTATIONS, f"{v7_id}.json: no image.original_filename ({exc})"
            ) from None
        if mapping.setdefault(v7_id, filename) != filename:
            raise ChestlensInputError(
                folder / ANNOTATIONS, f"{v7_id}.json names both {mapping[v7_id]} and {filename}"
            )
    return mapping


def load(folder: Path) -> list[Sample]:
    """One sample per lung mask whose image and ieee8023 metadata row exist, sorted by mask id."""
    records = {r.path.name: r for r in read_records(folder / METADATA)}
    filenames = mask_filenames(folder)
    samples = []
    skipped = 0
    for mask_path in sorted((folder / MASKS).glob("*.png")):
        record = records.get(filenames.get(mask_path.stem, ""))
        if record is None or not record.path.is_file() or record.modality not in MODALITIES:
            skipped += 1
            continue
        extra = {
            **record.extra,
            "v7_image_id": mask_path.stem,
            "mask": mask_path.relative_to(folder).as_posix(),
        }
        samples.append(record.to_sample(SOURCE, folder, masks=LungMask(mask_path, record.path), extra=extra))
    if skipped:
        logger.debug("%s: %d mask(s) without annotation JSON, metadata row or image skipped", folder, skipped)
    return samples


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="V7 Labs lung masks (255 lung, 127 ignore) on ieee8023 chest X-rays",
        detect=detect,
        load=load,
    )
)
