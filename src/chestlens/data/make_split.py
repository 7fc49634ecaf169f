"""One call from a data root to a leak-free split: load, hash, link patients, allocate.

Used by ``chestlens data split`` and ``chestlens train classify|segment`` so all make the same split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chestlens.data.check import analyse
from chestlens.data.duplicates import NearDuplicate
from chestlens.data.hashing import Progress, hash_samples
from chestlens.data.registry import load_samples
from chestlens.data.splits import DEFAULT_FRACTIONS, SplitTable, make_splits
from chestlens.data.tasks import get_labelling


@dataclass(frozen=True, slots=True)
class BuiltSplit:
    """A split and the evidence it was built from.

    Attributes:
        table: the split rows (only the requested sources).
        near_duplicates: near-duplicate image pairs found among ALL samples under the root.
        hash_failures: uid -> reason, for images that could not be hashed.
        n_cached: hashes taken from the cache.
    """

    table: SplitTable
    near_duplicates: list[NearDuplicate] = field(default_factory=list)
    hash_failures: dict[str, str] = field(default_factory=dict)
    n_cached: int = 0


def build_splits(
    root: Path,
    task: str,
    sources: Sequence[str] | None = None,
    *,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    cache: Path | None = None,
    workers: int = 2,
    progress: Progress | None = None,
) -> BuiltSplit:
    """Split the samples of ``sources`` (default: all) under ``root`` for ``task``: a classification task
    (stratified by source x class) or a segmentation target (samples with its masks, stratified by source),
    see :func:`chestlens.data.tasks.get_labelling`.

    Patients are linked across every source under the root (shared ids, aliases, image keys and
    near-duplicate pixels), including sources that are not being split, so a person or picture that
    appears twice always lands on one side.

    Args:
        cache: SQLite hash cache (see :func:`chestlens.data.hashing.default_cache_path`), or None.
    """
    everything = load_samples(root)
    wanted = None if sources is None else set(sources)
    samples = [s for s in everything if wanted is None or s.source in wanted]
    hashed = hash_samples(everything, cache, workers, progress)
    pairs, groups = analyse(everything, hashed.hashes)
    table = make_splits(samples, get_labelling(task).mapping, fractions, seed, groups.group_of, task, root)
    return BuiltSplit(table, pairs, hashed.failures, hashed.n_cached)
