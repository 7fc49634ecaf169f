"""COVIDx CT (COVID-Net CT, Gunraj et al.; Kaggle ``hgunraj/covidxct``) in its original layout.

Layout::

    train_COVIDx_CT-2A.txt   val_COVIDx_CT-2A.txt   test_COVIDx_CT-2A.txt   (or -2B, -3A, -3B;
                                                     v1: train_COVIDx-CT.txt ...)
    2A_images/<slice>.png    (any folder under the dataset folder)

Each label-file line is ``filename class xmin ymin xmax ymax`` (whitespace-separated): class 0
Normal, 1 Pneumonia (non-COVID-19, mostly community-acquired), 2 COVID-19 (the ``CLASS_MAP`` of
COVIDNet-CT's ``dataset_construction``), and the integer box in pixels is the body/lung region
COVIDNet-CT crops to (``xmax``/``ymax`` exclusive). The box is kept as ``(xmin, ymin, xmax, ymax,
"lung")``. When one filename appears in several label files (e.g. the "B" training list repeats
the "A" one) the first file in split order train, val, test (then name order) wins; its split is
``extra["split"]``.

Slices from the CNCB source are named ``<Class>_<PatientID>_<ScanNum>_<SliceNum>.png`` with
``<Class>`` ``NCP`` (COVID-19), ``CP`` (common pneumonia) or ``Normal``, e.g.
``CP_1070_3112_0032.png``. Without label files, those names alone are loaded (other PNGs are
skipped with a warning). Slices from the other sources are named ``<scan prefix>-<SliceNum>.png``
(e.g. ``volume-covid19-A-0003_ct-0042.png``) and are loaded only from label files.

Samples: findings ``("Normal",)``, ``("Pneumonia",)`` or ``("COVID-19",)`` in both forms;
modality ``ct``, view ``axial``. ``patient_id`` is ``"covidx_ct:<Class>_<PatientID>"`` for CNCB
names (CNCB numbers patients per class folder, as COVIDNet-CT's ``metadata.csv`` does), and
``"covidx_ct:<scan prefix>"`` for the others, which is a scan, not a patient, key: two scans of
one patient of those sources may end up in different splits. ``extra`` holds ``scan`` and
``slice`` (and ``cncb_class``) parsed from the name.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from chestlens.data.formats._common import iter_files, relative_posix
from chestlens.data.records import Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.errors import ChestlensInputError

SOURCE = "covidx_ct"
BOX_CLASS = "lung"
# Label-file class index -> finding.
CLASS_NAMES = ("Normal", "Pneumonia", "COVID-19")
# CNCB file-name class -> finding.
CNCB_CLASSES = {"NCP": "COVID-19", "CP": "Pneumonia", "Normal": "Normal"}
_SPLITS = ("train", "val", "test")
_LABEL_FILE = re.compile(r"^(train|val|test)_COVIDx[_-]CT.*\.txt$", re.IGNORECASE)
_CNCB_NAME = re.compile(r"^(?P<cls>NCP|CP|Normal)_(?P<patient>\d+)_(?P<scan>\d+)_(?P<slice>\d+)\.png$")
_SLICE_NAME = re.compile(r"^(?P<scan>.+)-(?P<slice>\d+)\.png$")
_PEEK = 20  # PNG names looked at by detect() per folder


def label_files(folder: Path) -> list[Path]:
    """COVIDx CT label files in ``folder``, in split order (train, val, test), then by name."""
    found = [p for p in folder.iterdir() if p.is_file() and _LABEL_FILE.match(p.name)]
    return sorted(found, key=lambda p: (_SPLITS.index(p.name.split("_", 1)[0].lower()), p.name))


def detect(folder: Path) -> bool:
    """True when ``folder`` holds COVIDx CT label files, or CNCB-named PNG slices directly or in a
    sub-folder whose name ends in ``images`` (``2A_images``)."""
    if label_files(folder):
        return True
    candidates = [folder, *(d for d in folder.iterdir() if d.is_dir() and d.name.lower().endswith("images"))]
    return any(_has_cncb_png(d) for d in candidates)


def load(folder: Path) -> list[Sample]:
    """Read a COVIDx CT folder (module docstring): label files if present, else CNCB file names.

    Raises:
        ChestlensInputError: a malformed label line (named by file and line), or no slices.
    """
    pngs: dict[str, Path] = {}
    for path in iter_files(folder, frozenset({".png"})):
        pngs.setdefault(path.name, path)
    files = label_files(folder)
    samples = _from_label_files(folder, files, pngs) if files else _from_names(folder, pngs)
    if not samples:
        raise ChestlensInputError(folder, "no COVIDx CT slices found")
    return samples


def _from_label_files(folder: Path, files: list[Path], pngs: dict[str, Path]) -> list[Sample]:
    samples: dict[str, Sample] = {}
    missing: list[str] = []
    for label_file in files:
        split = label_file.name.split("_", 1)[0].lower()
        for line_number, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            name, class_index, box = _parse_line(label_file, line_number, fields)
            if name in samples:
                continue
            if name not in pngs:
                missing.append(name)
                continue
            samples[name] = _sample(folder, pngs[name], CLASS_NAMES[class_index], box, split)
    if missing:
        warnings.warn(
            f"{folder}: {len(missing)} slices listed in the label files not found (e.g. {missing[0]}); "
            "loading the others",
            stacklevel=3,
        )
    return list(samples.values())


def _from_names(folder: Path, pngs: dict[str, Path]) -> list[Sample]:
    samples = []
    skipped = 0
    for name, path in pngs.items():
        match = _CNCB_NAME.match(name)
        if match is None:
            skipped += 1
            continue
        samples.append(_sample(folder, path, CNCB_CLASSES[match["cls"]], None, None))
    if skipped:
        warnings.warn(
            f"{folder}: {skipped} PNG files without a label file and not named "
            "<Class>_<PatientID>_<ScanNum>_<SliceNum>.png skipped",
            stacklevel=3,
        )
    return samples


def _parse_line(path: Path, line_number: int, fields: list[str]) -> tuple[str, int, tuple[int, ...]]:
    """``filename class xmin ymin xmax ymax`` -> (filename, class index, box)."""
    if len(fields) != 6:
        raise ChestlensInputError(
            path,
            f"line {line_number}: expected 6 fields (filename class xmin ymin xmax ymax), got {len(fields)}",
        )
    try:
        class_index, *box = (int(v) for v in fields[1:])
    except ValueError:
        raise ChestlensInputError(path, f"line {line_number}: class and box must be integers") from None
    if not 0 <= class_index < len(CLASS_NAMES):
        raise ChestlensInputError(path, f"line {line_number}: class must be 0, 1 or 2, got {class_index}")
    xmin, ymin, xmax, ymax = box
    if xmin < 0 or ymin < 0 or xmax <= xmin or ymax <= ymin:
        raise ChestlensInputError(path, f"line {line_number}: empty or negative box {box}")
    return fields[0], class_index, tuple(box)


def _sample(folder: Path, path: Path, finding: str, box: tuple[int, ...] | None, split: str | None) -> Sample:
    extra: dict[str, str] = {}
    cncb = _CNCB_NAME.match(path.name)
    if cncb is not None:
        patient = f"{cncb['cls']}_{cncb['patient']}"
        extra.update(cncb_class=cncb["cls"], scan=cncb["scan"], slice=cncb["slice"])
    elif (named := _SLICE_NAME.match(path.name)) is not None:
        patient = named["scan"]
        extra.update(scan=named["scan"], slice=named["slice"])
    else:
        patient = path.stem
    if split is not None:
        extra["split"] = split
    boxes = () if box is None else ((float(box[0]), float(box[1]), float(box[2]), float(box[3]), BOX_CLASS),)
    return Sample(
        source=SOURCE,
        uid=f"{SOURCE}/{relative_posix(path, folder)}",
        path=path,
        patient_id=f"{SOURCE}:{patient}",
        findings=(finding,),
        modality="ct",
        view="axial",
        boxes=boxes,
        extra=extra,
    )


def _has_cncb_png(folder: Path) -> bool:
    seen = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.lower().endswith(".png"):
                if _CNCB_NAME.match(entry.name):
                    return True
                seen += 1
                if seen >= _PEEK:
                    return False
    return False


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder="covidxct",
        modality="ct",
        description="COVIDx CT (COVID-Net CT): PNG slices, Normal/Pneumonia/COVID-19, lung boxes",
        detect=detect,
        load=load,
    )
)
