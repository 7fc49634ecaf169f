"""Registry of dataset layouts (timm-style: one named entry, one adapter object each).

A layout adapter knows how to recognise a folder in one public dataset's original layout and how to
read it into :class:`~chestlens.data.records.Sample` records. ``load_samples(root)`` finds every known
layout under a data root (the root itself, or its sub-folders by their conventional names), so a user
can point chestlens at ``../shared/data``, at a held-out copy, or at their own hospital's images in the
same layout.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from chestlens.data.records import Modality, Sample
from chestlens.errors import ChestlensInputError
from chestlens.registry import Registry


@dataclass(frozen=True, slots=True)
class SourceAdapter:
    """One dataset layout.

    Attributes:
        name: short registry name, also the ``Sample.source`` value (``"kermany"``).
        folder: conventional folder name under a data root (``"kermany-chest-xray"``).
        modality: ``"xray"`` or ``"ct"``.
        description: one line for ``chestlens data sources`` and the docs.
        detect: True when a folder is laid out this way (cheap: checks a few names only).
        load: reads every sample from such a folder.
        generic: a catch-all layout (folder-per-class, CSV manifest) that only applies to the root
            itself, and only when no dataset-specific layout was found there.
    """

    name: str
    folder: str
    modality: Modality
    description: str
    detect: Callable[[Path], bool]
    load: Callable[[Path], list[Sample]]
    generic: bool = False


_REGISTRY: Registry[SourceAdapter] = Registry("data source")

# Modules that register the built-in adapters when imported.
_BUILTIN_MODULES = (
    "chestlens.data.sources.ieee8023",
    "chestlens.data.sources.hannover",
    "chestlens.data.sources.kermany",
    "chestlens.data.sources.nih",
    "chestlens.data.sources.radiopaedia",
    "chestlens.data.sources.actualmed",
    "chestlens.data.sources.figure1",
    "chestlens.data.sources.v7_lungs",
    "chestlens.data.sources.generalblockchain",
    "chestlens.data.sources.infnet",
    "chestlens.data.sources.covid_ct_md",
    "chestlens.data.formats.siim",
    "chestlens.data.formats.rsna",
    "chestlens.data.formats.covidx_ct",
    "chestlens.data.formats.coco",
    "chestlens.data.formats.supervisely",
    "chestlens.data.formats.folder",
    "chestlens.data.formats.manifest",
)
_loaded = False


register = _REGISTRY.register  # add an adapter; names must be unique


def _ensure_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def adapters() -> list[SourceAdapter]:
    """All registered adapters, in registration order."""
    _ensure_builtins()
    return _REGISTRY.values()


def get_adapter(name: str) -> SourceAdapter:
    """The adapter named ``name`` (a one-line error listing the known names otherwise)."""
    _ensure_builtins()
    return _REGISTRY.get(name)


def find_sources(root: Path, names: Iterable[str] | None = None) -> list[tuple[SourceAdapter, Path]]:
    """Locate layouts under ``root``: each adapter's conventional sub-folder, else ``root`` itself.

    Args:
        root: a data root such as ``../shared/data``, or one dataset folder.
        names: restrict to these adapter names (default: all).
    """
    if not root.is_dir():
        raise ChestlensInputError(root, "data root is not a folder")
    wanted = [get_adapter(n) for n in names] if names is not None else adapters()
    found = []
    for adapter in (a for a in wanted if not a.generic):
        candidate = root / adapter.folder
        if candidate.is_dir() and adapter.detect(candidate):
            found.append((adapter, candidate))
        elif adapter.detect(root):
            found.append((adapter, root))
    if not found:
        found = [(a, root) for a in wanted if a.generic and a.detect(root)][:1]
    return found


def load_samples(root: Path, names: Iterable[str] | None = None) -> list[Sample]:
    """Read every sample of every recognised layout under ``root`` (see :func:`find_sources`)."""
    found = find_sources(root, names)
    if not found:
        raise ChestlensInputError(root, "no supported dataset layout found in this folder")
    samples: list[Sample] = []
    for adapter, folder in found:
        samples.extend(adapter.load(folder))
    return samples
