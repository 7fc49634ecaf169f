"""MedSeg COVID-19 CT slices as packaged by Inf-Net (Fan et al., IEEE TMI 2020): ``Dataset/``.

Layout (``<folder>/Dataset/``), each set holding ``Imgs/<n>.jpg`` and ``GT/<n>.png``:

* ``TrainingSet/MultiClassInfection-Train``, ``TestingSet/MultiClassInfection-Test``: GT 0 background,
  1 ground-glass opacity, 2 consolidation;
* ``TrainingSet/LungInfection-Train/Doctor-label``, ``TestingSet/LungInfection-Test``: binary GT (255).
  Inf-Net's ``Pseudo-label`` folder (machine labels on other scans) is not read.

One sample per distinct slice: sets are read multi-class first and an image whose bytes equal one
already read (upstream's LungInfection sets repeat the multi-class slices) only adds its set name to
``extra["sets"]``. Masks (:class:`InfectionMasks`, lazy): ``ggo`` and ``consolidation`` from a
multi-class GT, and ``infection`` (their union, or the binary GT > 127 for slices only in a binary set).

No patient ids exist upstream: ``patient_id`` is per slice (``"infnet:slice-<n>"``, MedSeg's global
slice number); slices of one patient (e.g. near-duplicates 10 and 43) are left to the near-duplicate
detector. Pixels are JPEG grey levels of a cropped CT window, NOT Hounsfield units (recorded in
``extra``), and the slices are stored turned a quarter counter-clockwise from the radiological display
(spine on the right): ``extra["display_quarter_turns"] = "1"`` makes the training tensors turn image and
masks back, so a model trained here reads DICOM CT in its usual orientation. The files are read as
stored. ``extra["official_split"]`` is ``train`` or ``test``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from chestlens.data.records import DISPLAY_QUARTER_TURNS, Masks, Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.sources import natural_key, sample_uid

SOURCE = "infnet"
FOLDER = "infnet-covid-semiseg"
DATASET = "Dataset"
# (set folder relative to Dataset/, official split, multi-class GT?) in reading order.
SETS = (
    ("TrainingSet/MultiClassInfection-Train", "train", True),
    ("TestingSet/MultiClassInfection-Test", "test", True),
    ("TrainingSet/LungInfection-Train/Doctor-label", "train", False),
    ("TestingSet/LungInfection-Test", "test", False),
)
MASK_CLASSES = ("ggo", "consolidation", "infection")
PIXELS_NOTE = "JPEG grey levels of a cropped CT window, not Hounsfield units"


@dataclass(frozen=True, slots=True)
class InfectionMasks:
    """Lazy infection masks: ``load()`` -> layers of shape (rows, cols) as in the slice image."""

    gt_path: Path
    multiclass: bool
    classes: tuple[str, ...]

    def load(self) -> Masks:
        with Image.open(self.gt_path) as image:
            # Palette ("P") GTs hold the class index; binary GTs are grey 0/255 (or 0/1).
            gt = np.asarray(image if image.mode in ("P", "L") else image.convert("L"))
        if not self.multiclass:
            return Masks(layers={"infection": gt > (127 if gt.max() > 1 else 0)})
        ggo, consolidation = gt == 1, gt == 2
        return Masks(layers={"ggo": ggo, "consolidation": consolidation, "infection": ggo | consolidation})


@dataclass(slots=True)
class _Slice:
    path: Path
    split: str
    gt: Path
    multiclass: bool
    sets: list[str] = field(default_factory=list)


def detect(folder: Path) -> bool:
    """``Dataset/`` with at least one of Inf-Net's infection set folders."""
    return any((folder / DATASET / name / "Imgs").is_dir() for name, _, _ in SETS)


def load(folder: Path) -> list[Sample]:
    """One sample per distinct slice image (see module docstring), in set order then slice number."""
    entries: dict[bytes, _Slice] = {}
    for name, split, multiclass in SETS:
        images = folder / DATASET / name / "Imgs"
        if not images.is_dir():
            continue
        for path in sorted(images.glob("*.jpg"), key=lambda p: natural_key(p.name)):
            gt = folder / DATASET / name / "GT" / f"{path.stem}.png"
            entry = entries.setdefault(
                hashlib.sha1(path.read_bytes()).digest(), _Slice(path, split, gt, multiclass)
            )
            entry.sets.append(Path(name).parts[1])
    samples = []
    for entry in entries.values():
        path = entry.path
        masks = None
        if entry.gt.is_file():
            classes = MASK_CLASSES if entry.multiclass else ("infection",)
            masks = InfectionMasks(entry.gt, entry.multiclass, classes)
        samples.append(
            Sample(
                source=SOURCE,
                uid=sample_uid(SOURCE, folder, path),
                path=path,
                patient_id=f"{SOURCE}:slice-{path.stem}",
                findings=("COVID-19",),
                modality="ct",
                view="axial",
                masks=masks,
                extra={
                    "official_split": entry.split,
                    "sets": "|".join(entry.sets),
                    "pixel_values": PIXELS_NOTE,
                    DISPLAY_QUARTER_TURNS: "1",
                },
            )
        )
    return samples


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="ct",
        description="MedSeg COVID-19 CT slices via Inf-Net: GGO (1) / consolidation (2) and binary infection",
        detect=detect,
        load=load,
    )
)
