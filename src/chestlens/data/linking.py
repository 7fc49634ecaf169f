"""Patient groups across sources: which samples may belong to one person.

Samples are joined (union-find) when they have

* the same ``patient_id`` string (ids carry the namespace of the dataset that owns them, so V7 and
  GeneralBlockchain copies of ieee8023 images already share ieee8023 ids);
* metadata links the adapters record (conventions of :mod:`chestlens.data.sources`):
  ``extra["patient_aliases"]`` (other ids one file is listed under, e.g. ieee8023 285 and 339) and
  equal ``extra["image_key"]`` (one picture re-published by several datasets, e.g. a Hannover image
  in ieee8023 / V7);
* the same image file (one file listed under two patient ids by an adapter that yields both);
* near-duplicate pixels (:mod:`chestlens.data.duplicates`).

Every group gets a deterministic id: the smallest ``patient_id`` among its members (plain string
order). A split must keep every group on one side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chestlens.data.duplicates import NearDuplicate
from chestlens.data.records import Sample


@dataclass(frozen=True, slots=True)
class Link:
    """Why two samples were put in one group (uids, ``a <= b``; ``a == b`` when one file carries several
    patient ids)."""

    a: str
    b: str
    reason: str


@dataclass(frozen=True, slots=True)
class PatientGroups:
    """A group id per sample uid, and the links that joined different patient ids.

    Attributes:
        group_of: uid -> group id (smallest patient id in the group).
        links: links between samples with different patient ids (or aliases), sorted.
    """

    group_of: dict[str, str]
    links: tuple[Link, ...]

    def members(self) -> dict[str, list[str]]:
        """Group id -> sorted member uids."""
        out: dict[str, list[str]] = {}
        for uid in sorted(self.group_of):
            out.setdefault(self.group_of[uid], []).append(uid)
        return out


def aliases(sample: Sample) -> list[str]:
    """Other patient ids the adapter merged into ``sample.patient_id`` (``extra["patient_aliases"]``)."""
    return sorted(filter(None, (sample.extra or {}).get("patient_aliases", "").split("|")))


class _UnionFind:
    def __init__(self, items: Iterable[str]) -> None:
        self.parent = {item: item for item in items}

    def find(self, item: str) -> str:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def link_samples(samples: Sequence[Sample], near_duplicates: Iterable[NearDuplicate] = ()) -> PatientGroups:
    """Group samples that may show the same person.

    Args:
        samples: all samples to consider (links through samples outside a split still count).
        near_duplicates: near-duplicate image pairs (uids not in ``samples`` are ignored).
    """
    by_uid = {s.uid: s for s in samples}
    uids = sorted(by_uid)
    forest = _UnionFind(uids)
    links: set[Link] = set()

    def join(a: str, b: str, reason: str) -> None:
        if by_uid[a].patient_id != by_uid[b].patient_id:
            links.add(Link(min(a, b), max(a, b), reason))
        forest.union(a, b)

    def join_all(index: dict[str, list[str]], describe: Callable[[str], str]) -> None:
        for key, members in sorted(index.items()):
            for uid in members[1:]:
                join(members[0], uid, describe(key))

    by_patient: dict[str, list[str]] = {}
    by_image: dict[str, list[str]] = {}
    by_file: dict[str, list[str]] = {}
    for uid in uids:
        sample = by_uid[uid]
        by_patient.setdefault(sample.patient_id or uid, []).append(uid)
        by_file.setdefault(Path(sample.path).resolve().as_posix(), []).append(uid)
        key = (sample.extra or {}).get("image_key")
        if key:
            by_image.setdefault(key, []).append(uid)
    join_all(by_patient, lambda key: f"same patient id {key}")
    for uid in uids:
        for alias in aliases(by_uid[uid]):
            links.add(Link(uid, uid, f"metadata lists this file under {by_uid[uid].patient_id} and {alias}"))
            for other in by_patient.get(alias, [])[:1]:
                join(uid, other, f"patient alias {alias} (metadata)")
    join_all(by_image, lambda key: f"same picture {key} (metadata)")
    join_all(by_file, lambda key: f"same file {Path(key).name}")
    for pair in sorted(near_duplicates, key=lambda p: (p.a, p.b)):
        if pair.a in by_uid and pair.b in by_uid:
            distances = f"phash {pair.phash_distance}, dhash {pair.dhash_distance} bits"
            join(pair.a, pair.b, f"near-duplicate image ({distances})")

    group_name: dict[str, str] = {}
    for uid in uids:
        root = forest.find(uid)
        pid = by_uid[uid].patient_id or uid
        group_name[root] = min(group_name.get(root, pid), pid)
    group_of = {uid: group_name[forest.find(uid)] for uid in uids}
    return PatientGroups(group_of, tuple(sorted(links, key=lambda x: (x.a, x.b, x.reason))))
