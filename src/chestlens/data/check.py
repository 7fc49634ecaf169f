"""Leakage checks: linked patients, near-duplicate images, and overlap across the sides of a split.

:func:`analyse` hashes nothing itself: give it the hashes (:func:`chestlens.data.hashing.hash_samples`)
and it finds near-duplicates and patient groups. :func:`check` then reports, for a split table, every
patient group and every near-duplicate pair that sits on more than one side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from chestlens.data.duplicates import DHASH_THRESHOLD, PHASH_THRESHOLD, NearDuplicate, find_near_duplicates
from chestlens.data.hashing import ImageHash
from chestlens.data.linking import Link, PatientGroups, aliases, link_samples
from chestlens.data.records import Sample
from chestlens.data.splits import SplitTable


@dataclass(frozen=True, slots=True)
class LinkedGroup:
    """A patient group that joins several patient ids, and the links that joined them."""

    group: str
    patient_ids: tuple[str, ...]
    sources: tuple[str, ...]
    n_samples: int
    links: tuple[Link, ...]


@dataclass(frozen=True, slots=True)
class GroupOverlap:
    """A patient group whose samples are on several sides of a split (split -> sorted uids)."""

    group: str
    patient_ids: tuple[str, ...]
    splits: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class DuplicateOverlap:
    """A near-duplicate pair split across two sides."""

    pair: NearDuplicate
    split_a: str
    split_b: str


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Everything ``chestlens data check`` reports; ``clean`` is False when a split leaks."""

    n_samples: int
    n_hashed: int
    phash_threshold: int
    dhash_threshold: int
    linked_groups: tuple[LinkedGroup, ...]
    near_duplicates: tuple[NearDuplicate, ...]
    hash_failures: dict[str, str] = field(default_factory=dict)
    n_split_rows: int | None = None
    patient_overlap: tuple[GroupOverlap, ...] = ()
    duplicate_overlap: tuple[DuplicateOverlap, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.patient_overlap and not self.duplicate_overlap

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["clean"] = self.clean
        return out


def analyse(
    samples: Sequence[Sample],
    hashes: Mapping[str, ImageHash],
    phash_threshold: int = PHASH_THRESHOLD,
    dhash_threshold: int = DHASH_THRESHOLD,
) -> tuple[list[NearDuplicate], PatientGroups]:
    """Near-duplicate pairs among the hashed samples, and patient groups over all samples."""
    pairs = find_near_duplicates(hashes, phash_threshold, dhash_threshold)
    return pairs, link_samples(samples, pairs)


def check(
    samples: Sequence[Sample],
    groups: PatientGroups,
    near_duplicates: Sequence[NearDuplicate],
    table: SplitTable | None = None,
    hash_failures: Mapping[str, str] | None = None,
    n_hashed: int = 0,
    phash_threshold: int = PHASH_THRESHOLD,
    dhash_threshold: int = DHASH_THRESHOLD,
) -> CheckReport:
    """Report linked patients, near-duplicates and (with ``table``) overlap across its splits."""
    by_uid = {s.uid: s for s in samples}
    links_of: dict[str, list[Link]] = {}
    for link in groups.links:
        links_of.setdefault(groups.group_of[link.a], []).append(link)
    linked = []
    for group, uids in groups.members().items():
        patient_ids = _patient_ids(by_uid, uids)
        if len(patient_ids) > 1:
            sources = tuple(sorted({by_uid[u].source for u in uids}))
            linked.append(LinkedGroup(group, patient_ids, sources, len(uids), tuple(links_of.get(group, ()))))
    report = CheckReport(
        n_samples=len(by_uid),
        n_hashed=n_hashed,
        phash_threshold=phash_threshold,
        dhash_threshold=dhash_threshold,
        linked_groups=tuple(linked),
        near_duplicates=tuple(near_duplicates),
        hash_failures=dict(sorted((hash_failures or {}).items())),
    )
    if table is None:
        return report
    split_of = table.split_of()
    overlap = []
    for group, uids in groups.members().items():
        sides: dict[str, list[str]] = {}
        for uid in uids:
            if uid in split_of:
                sides.setdefault(split_of[uid], []).append(uid)
        if len(sides) > 1:
            patient_ids = _patient_ids(by_uid, uids)
            overlap.append(GroupOverlap(group, patient_ids, {k: tuple(v) for k, v in sorted(sides.items())}))
    crossing = [
        DuplicateOverlap(p, split_of[p.a], split_of[p.b])
        for p in near_duplicates
        if p.a in split_of and p.b in split_of and split_of[p.a] != split_of[p.b]
    ]
    return replace(
        report,
        n_split_rows=len(table.rows),
        patient_overlap=tuple(overlap),
        duplicate_overlap=tuple(crossing),
    )


def _patient_ids(by_uid: Mapping[str, Sample], uids: Sequence[str]) -> tuple[str, ...]:
    """Every patient id (aliases included) of a group's samples, sorted."""
    return tuple(sorted({p for u in uids for p in (by_uid[u].patient_id, *aliases(by_uid[u]))}))
