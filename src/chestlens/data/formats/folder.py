"""Generic folder-per-class layout: the class of an image is the name of its folder.

Layouts::

    ROOT/<class>/**/<image>                 e.g. ROOT/COVID-19/a.png, ROOT/Normal/sub/b.dcm
    ROOT/<split>/<class>/**/<image>         <split> one of train, val, valid, validation, test

Images are files with a suffix in ``.png .jpg .jpeg .bmp .tif .tiff .dcm`` (any case); hidden
entries are skipped. Class folders are the visible sub-folders (of the split folders, when any
sub-folder of ROOT is named like a split) that contain at least one image, except folders whose
name starts with ``_`` (``__MACOSX``) or contains ``mask``. The layout is recognised only when
there are at least two class folders and ROOT has no ``manifest.csv`` (the manifest is more
specific and wins).

Samples: ``findings`` is ``(class folder name,)`` verbatim; ``extra["split"]`` is the split
folder name verbatim where there is one; ``modality`` is ``xray`` (use a manifest with a
``modality`` column for CT slices). Folders carry no patient ids, so ``patient_id`` is
``"folder:<file stem>"``: every file is its own patient, images of one person can land in
different splits, and evaluation can be optimistic. A warning says so on every load; use a
``manifest.csv`` with a ``patient_id`` column where the ids are known.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from chestlens.data.formats._common import IMAGE_SUFFIXES, iter_files, relative_posix
from chestlens.data.records import Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.errors import ChestlensInputError

SOURCE = "folder"
SPLIT_NAMES = frozenset({"train", "val", "valid", "validation", "test"})
MANIFEST_NAME = "manifest.csv"


def class_folders(root: Path) -> list[tuple[str | None, Path]]:
    """``(split name or None, class folder)`` pairs of a folder-per-class tree (module docstring)."""
    subfolders = _visible_dirs(root)
    splits = [d for d in subfolders if d.name.lower() in SPLIT_NAMES]
    if splits:
        pairs: list[tuple[str | None, Path]] = [(s.name, d) for s in splits for d in _visible_dirs(s)]
    else:
        pairs = [(None, d) for d in subfolders]
    return [(split, d) for split, d in pairs if _is_class_name(d.name) and _has_image(d)]


def detect(folder: Path) -> bool:
    """True when ``folder`` has at least two class folders with images and no ``manifest.csv``."""
    if (folder / MANIFEST_NAME).is_file():
        return False
    return len({d.name for _, d in class_folders(folder)}) >= 2


def load(folder: Path) -> list[Sample]:
    """One :class:`Sample` per image under the class folders of ``folder``.

    Raises:
        ChestlensInputError: fewer than two class folders with images.
    """
    pairs = class_folders(folder)
    if len({d.name for _, d in pairs}) < 2:
        raise ChestlensInputError(folder, "folder-per-class needs at least two class folders with images")
    samples = [
        Sample(
            source=SOURCE,
            uid=f"{SOURCE}/{relative_posix(path, folder)}",
            path=path,
            patient_id=f"{SOURCE}:{path.stem}",
            findings=(class_dir.name,),
            modality="xray",
            extra={} if split is None else {"split": split},
        )
        for split, class_dir in pairs
        for path in iter_files(class_dir, IMAGE_SUFFIXES)
    ]
    warnings.warn(
        f"{folder}: folder-per-class images have no patient ids; each file is treated as its own "
        "patient, so one person's images can fall into different splits (add a manifest.csv with "
        "a patient_id column to group them)",
        stacklevel=2,
    )
    return samples


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _is_class_name(name: str) -> bool:
    return not name.startswith("_") and "mask" not in name.lower()


def _has_image(folder: Path) -> bool:
    return next(iter_files(folder, IMAGE_SUFFIXES), None) is not None


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder="folder-per-class",
        modality="xray",
        description="Generic folder-per-class tree: ROOT/[split/]<class>/**/<image>",
        detect=detect,
        load=load,
        generic=True,
    )
)
