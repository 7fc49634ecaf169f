"""Decoded, preprocessed image tensors with their labels, for training and evaluation.

Every image is decoded once (:func:`chestlens.io.read_image`), mapped to ``[0, 1]`` and resized to the
network input size with the exact inference resize of :func:`chestlens.data.transforms.resize_unit`, then
kept in memory as float32 ``(N, 1, S, S)``. Evaluation therefore sees precisely what ``chestlens predict``
feeds the network; training applies augmentation on top (:mod:`chestlens.train.dataset`).

A classifier that reads the lung fields only (``spec.lung_roi`` / ``spec.equalise``) needs the lung
masks: the caller passes a :data:`LungMasker` (the lung segmenter bundle, as the screener runs it), and
each image goes through :func:`chestlens.data.lung_roi.lung_roi_input`, the screener's own step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chestlens.data.lung_roi import lung_roi_with_mask
from chestlens.data.records import Sample
from chestlens.data.transforms import resize_unit
from chestlens.preprocess.lung_roi import needs_lungs
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.preprocess.units import to_unit_range
from chestlens.workers import MIN_ITEMS_FOR_POOL, process_pool

#: Lung masks of grey ``[0, 1]`` images ``(1, H, W)``: bool ``(h, w)`` each, on the segmenter's grid.
LungMasker = Callable[[Sequence[torch.Tensor]], list[np.ndarray]]
#: Images decoded at full resolution at a time when lung masks are needed (bounds memory).
_ROI_CHUNK = 64


def _decode_unit(path: str, spec: PreprocessSpec) -> torch.Tensor:
    from chestlens.io import read_image

    return torch.from_numpy(np.ascontiguousarray(to_unit_range(read_image(Path(path)), spec)))[None]


def _decode_resized(args: tuple[str, PreprocessSpec]) -> np.ndarray:
    path, spec = args
    return resize_unit(_decode_unit(path, spec), spec.input_size).numpy()


class CachedLungMasker:
    """A :data:`LungMasker` that remembers the masks it computed, keyed by the image's content.

    The key is the BLAKE2b digest of the decoded pixels, so the same file decoded the same way hits the
    cache whatever the recipe. With ``path``, :meth:`save` keeps the cache as a compressed ``.npz`` for
    the next run (masks bit-packed; the segmenter's grid shape stored once).
    """

    def __init__(self, masker: LungMasker, path: Path | None = None) -> None:
        self.masker, self.path = masker, path
        self.masks: dict[str, np.ndarray] = {}
        if path is not None and path.is_file():
            with np.load(path) as saved:
                shape = tuple(saved["shape"])
                self.masks = {
                    k: np.unpackbits(v)[: shape[0] * shape[1]].reshape(shape).astype(bool)
                    for k, v in saved.items()
                    if k != "shape"
                }

    @staticmethod
    def key(unit: torch.Tensor) -> str:
        return hashlib.blake2b(unit.numpy().tobytes(), digest_size=16).hexdigest()

    def __call__(self, units: Sequence[torch.Tensor]) -> list[np.ndarray]:
        keys = [self.key(u) for u in units]
        missing = [i for i, k in enumerate(keys) if k not in self.masks]
        if missing:
            for i, mask in zip(missing, self.masker([units[i] for i in missing]), strict=True):
                self.masks[keys[i]] = mask
        return [self.masks[k] for k in keys]

    def save(self) -> None:
        """Write the cache to ``path`` (atomically: a temporary file, then a rename)."""
        if self.path is None or not self.masks:
            return
        shape = next(iter(self.masks.values())).shape
        staging = self.path.with_suffix(".tmp.npz")
        np.savez_compressed(
            staging, shape=np.asarray(shape), **{k: np.packbits(v) for k, v in self.masks.items()}
        )
        staging.replace(self.path)


def decode_with_lungs(
    paths: Sequence[Path], spec: PreprocessSpec, lungs: LungMasker | None
) -> tuple[torch.Tensor, np.ndarray | None]:
    """Images through the lung-field preprocessing, ``(N, 1, S, S)``, and, with a masker, their lung
    masks on the same grid (bool ``(N, S, S)``); full-size decodes happen a chunk at a time."""
    if needs_lungs(spec) and lungs is None:
        raise ValueError(f"preprocessing lung_roi={spec.lung_roi!r} needs a lung masker")
    images, masks = [], []
    for start in range(0, len(paths), _ROI_CHUNK):
        units = [_decode_unit(str(p), spec) for p in paths[start : start + _ROI_CHUNK]]
        found = lungs(units) if lungs is not None else [None] * len(units)
        for unit, mask in zip(units, found, strict=True):
            image, grid = lung_roi_with_mask(unit, mask, spec)
            images.append(image)
            masks.append(grid)
    size = spec.input_size
    stacked = torch.stack(images) if images else torch.empty(0, 1, size, size)
    return stacked, (np.stack(masks) if lungs is not None and masks else None)


def decode_images(
    paths: Sequence[Path], spec: PreprocessSpec, workers: int = 2, lungs: LungMasker | None = None
) -> torch.Tensor:
    """Decode and resize images to a float32 tensor ``(N, 1, S, S)`` with values in ``[0, 1]``.

    Args:
        lungs: the lung masker, needed when ``spec.lung_roi`` is not ``"none"``.
    """
    if needs_lungs(spec) or spec.equalise != "none":
        return decode_with_lungs(paths, spec, lungs)[0]
    jobs = [(str(p), spec) for p in paths]
    if workers > 1 and len(jobs) >= MIN_ITEMS_FOR_POOL:
        with process_pool(workers) as pool:
            arrays = list(pool.map(_decode_resized, jobs, chunksize=8))
    else:
        arrays = [_decode_resized(job) for job in jobs]
    return (
        torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 1, spec.input_size, spec.input_size)
    )


@dataclass(frozen=True, slots=True)
class LabelledImages:
    """Cached images with their targets and grouping keys.

    Attributes:
        images: float32 ``(N, 1, S, S)`` in ``[0, 1]``.
        targets: int64 ``(N,)`` class indices (classification), or uint8 ``(N, S, S)`` label maps
            (segmentation, :func:`chestlens.data.seg_tensors.segmented_images`).
        patient_ids, sources, uids: length-N string sequences (for patient bootstrap and per-source reports).
        views: length-N projections (``PA``, ``AP``, ...; None when unknown), for view-stratified metrics.
    """

    images: torch.Tensor
    targets: torch.Tensor
    patient_ids: tuple[str, ...]
    sources: tuple[str, ...]
    uids: tuple[str, ...]
    views: tuple[str | None, ...] = ()

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, index: Sequence[int] | np.ndarray) -> LabelledImages:
        """The images at ``index`` (in that order), with their keys."""
        index = np.asarray(index, dtype=int)

        def pick(values: tuple) -> tuple:
            return tuple(values[i] for i in index) if values else ()

        return LabelledImages(
            images=self.images[index],
            targets=self.targets[index],
            patient_ids=pick(self.patient_ids),
            sources=pick(self.sources),
            uids=pick(self.uids),
            views=pick(self.views),
        )

    @classmethod
    def of_items(
        cls, items: Sequence[tuple[Sample, str, str]], images: torch.Tensor, targets: torch.Tensor
    ) -> LabelledImages:
        """Images and targets of ``(sample, label, patient group)`` items, keyed by the items.

        The group (linked patient id) is what the evaluation bootstraps over.
        """
        return cls(
            images=images,
            targets=targets,
            patient_ids=tuple(group for _, _, group in items),
            sources=tuple(sample.source for sample, _, _ in items),
            uids=tuple(sample.uid for sample, _, _ in items),
            views=tuple(sample.view for sample, _, _ in items),
        )


def labelled_images(
    items: Sequence[tuple[Sample, str, str]],
    labels: Sequence[str],
    spec: PreprocessSpec,
    lungs: LungMasker | None = None,
) -> LabelledImages:
    """Decode ``(sample, class label, patient group)`` items into :class:`LabelledImages`."""
    return LabelledImages.of_items(
        items,
        decode_images([Path(sample.path) for sample, _, _ in items], spec, lungs=lungs),
        torch.tensor([list(labels).index(label) for _, label, _ in items], dtype=torch.long),
    )
