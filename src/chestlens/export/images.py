"""Real images for checking and calibrating exports: a bundle's test split, or a folder of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chestlens.errors import ChestlensInputError
from chestlens.export.verify import VerificationSet, unit_image
from chestlens.models.kinds import kind_of
from chestlens.models.spec import BundleSpec


def test_split_set(
    spec: BundleSpec, root: Path, *, splits: Path | None = None, max_images: int | None = None
) -> VerificationSet:
    """The labelled test split of the bundle's task under the data ``root``.

    The split is ``splits`` when given, else the split CSV recorded in the bundle's training config
    (``splits``, or ``splits.csv`` in its ``out`` folder) when that file exists, else the same split
    rebuilt from ``root`` with the config's sources, seed and fractions
    (:func:`chestlens.data.make_split.build_splits`; hashes are cached).
    ``max_images``: keep every k-th item so that at most this many remain (all classes kept).
    """
    from chestlens.data.registry import load_samples

    config = spec.training.config
    recorded = [
        Path(config[key]) / name for key, name in (("splits", ""), ("out", "splits.csv")) if config.get(key)
    ]
    csv = splits or next((path for path in recorded if path.is_file()), None)
    samples = load_samples(root)
    if csv is not None:
        from chestlens.data.splits import load_splits

        table = load_splits(csv, samples)
        where = str(csv)
    else:
        from chestlens.data.hashing import default_cache_path
        from chestlens.data.make_split import build_splits

        table = build_splits(
            root,
            spec.task,
            config.get("sources"),
            seed=int(config.get("split_seed", 0)),
            fractions=config.get("split_fractions", (0.7, 0.15, 0.15)),
            cache=default_cache_path(),
        ).table
        where = f"split rebuilt from {root} (seed {config.get('split_seed', 0)})"
    items = table.labelled(samples, "test")
    if not items:
        raise ChestlensInputError(csv or root, f"no test images for task {spec.task}")
    if max_images is not None and len(items) > max_images:
        step = -(-len(items) // max_images)
        items = items[::step]
    units = [unit_image(Path(sample.path), spec) for sample, _, _ in items]
    targets = None
    if kind_of(spec).image_labels:
        targets = np.asarray([spec.labels.index(label) for _, label, _ in items])
    return VerificationSet(units, targets, f"test split, {len(units)} images ({where})")


def sample_set(spec: BundleSpec, root: Path, n_images: int) -> VerificationSet:
    """``n_images`` real images of the bundle's modality under ``root``, evenly spread over the sorted
    samples of every source (unlabelled: enough for the fp32 parity check, no split needed)."""
    from chestlens.data.registry import load_samples
    from chestlens.data.tasks import get_labelling

    modality = get_labelling(spec.task).modality
    samples = sorted((s for s in load_samples(root) if s.modality == modality), key=lambda s: s.uid)
    if not samples:
        raise ChestlensInputError(root, f"no {modality} images to verify the export on")
    picked = [samples[round(i)] for i in np.linspace(0, len(samples) - 1, min(n_images, len(samples)))]
    units = [unit_image(Path(sample.path), spec) for sample in picked]
    sources = sorted({s.source for s in picked})
    return VerificationSet(
        units, None, f"{len(units)} {modality} images of {', '.join(sources)} under {root}"
    )


def folder_units(folder: Path, spec: BundleSpec, max_images: int = 64) -> VerificationSet:
    """Up to ``max_images`` readable images of ``folder`` (recursive, sorted), unlabelled."""
    from chestlens.io.series import visible_files

    if not folder.is_dir():
        raise ChestlensInputError(folder, "not a folder of images")
    units = []
    for path in visible_files(folder):
        if len(units) == max_images:
            break
        try:
            units.append(unit_image(path, spec))
        except ChestlensInputError:
            continue
    if not units:
        raise ChestlensInputError(folder, "no readable 2-D images in the folder")
    return VerificationSet(units, None, f"{len(units)} images of {folder.name}")
