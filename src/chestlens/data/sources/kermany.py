"""Kermany pediatric chest X-rays (Kaggle "Chest X-Ray Images (Pneumonia)" layout).

Layout: ``<folder>/chest_xray/<split>/<NORMAL|PNEUMONIA>/<file>`` (``split`` = ``train``/``test``/
``val``); there is no metadata file. Labels come from the class folder; for PNEUMONIA the file name
says ``bacteria`` or ``virus`` (``person1_bacteria_1.jpeg``): ``findings`` is ``("NORMAL",)`` or
``("PNEUMONIA", "bacteria"|"virus")``.

Patients: no ids upstream. Groups from file names: ``personN_*`` -> ``kermany:personN``;
``IM-NNNN-*`` and ``NORMAL2-IM-NNNN-*`` -> one group ``kermany:IM-NNNN`` (conservative: the prefix may
or may not distinguish people). A name matching neither forms its own group (file stem).

Cohort facts (Kermany et al., Cell 2018): children aged one to five years from Guangzhou Women and
Children's Medical Center, anterior-posterior films. No per-image age or view exists, so ``age`` and
``view`` stay None and ``extra`` carries ``age_band="child"`` and ``cohort_view="AP"`` for confounder
summaries. ``extra["split"]`` keeps the Kaggle split folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from chestlens.data.records import Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.sources import sample_uid
from chestlens.io.sniff import PICTURE_SUFFIXES

SOURCE = "kermany"
FOLDER = "kermany-chest-xray"
SPLITS = ("train", "val", "test")
CLASSES = ("NORMAL", "PNEUMONIA")
COHORT = "pediatric, 1-5 years, Guangzhou Women and Children's Medical Center (Kermany et al., Cell 2018)"
_PERSON = re.compile(r"^(person\d+)_(bacteria|virus)_", re.IGNORECASE)
_IM = re.compile(r"^(?:NORMAL2-)?(IM-\d+)-")


def _root(folder: Path) -> Path:
    """The folder that holds the split folders: ``chest_xray/`` when present, else ``folder``."""
    nested = folder / "chest_xray"
    return nested if nested.is_dir() else folder


def detect(folder: Path) -> bool:
    """A ``train``/``val``/``test`` folder with a ``NORMAL`` or ``PNEUMONIA`` class folder."""
    root = _root(folder)
    return any((root / split / label).is_dir() for split in SPLITS for label in CLASSES)


def patient_group(filename: str) -> str:
    """``kermany:personN``, ``kermany:IM-NNNN`` (with or without ``NORMAL2-``), else ``kermany:<stem>``."""
    match = _PERSON.match(filename) or _IM.match(filename)
    return f"{SOURCE}:{match.group(1) if match else Path(filename).stem}"


def _findings(label: str, filename: str) -> tuple[str, ...]:
    match = _PERSON.match(filename)
    if label == "PNEUMONIA" and match:
        return (label, match.group(2).lower())
    return (label,)


def load(folder: Path) -> list[Sample]:
    """One sample per image file under ``<split>/<NORMAL|PNEUMONIA>/``, sorted by path."""
    root = _root(folder)
    samples = []
    for split in SPLITS:
        for label in CLASSES:
            class_dir = root / split / label
            if not class_dir.is_dir():
                continue
            for path in sorted(class_dir.iterdir()):
                if path.name.startswith(".") or path.suffix.lower() not in PICTURE_SUFFIXES:
                    continue
                samples.append(
                    Sample(
                        source=SOURCE,
                        uid=sample_uid(SOURCE, folder, path),
                        path=path,
                        patient_id=patient_group(path.name),
                        findings=_findings(label, path.name),
                        modality="xray",
                        extra={"split": split, "age_band": "child", "cohort_view": "AP", "cohort": COHORT},
                    )
                )
    return samples


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="Kermany pediatric chest X-rays: chest_xray/<split>/<NORMAL|PNEUMONIA>/ (Kaggle layout)",
        detect=detect,
        load=load,
    )
)
