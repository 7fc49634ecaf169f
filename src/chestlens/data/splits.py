"""Patient-level, stratified, seeded train/val/test splits, saved as an editable CSV.

Allocation (a documented greedy, deterministic for a seed):

1. Samples whose task label is None are left out (counted per source in the metadata).
2. Samples are grouped by their linked patient group (:mod:`chestlens.data.linking`); a stratum is a
   ``(source, label)`` pair, and a group may touch several strata.
3. Groups are ordered largest first; equal sizes are ordered by a permutation drawn from
   ``numpy.random.default_rng(seed)`` over the sorted group ids (nothing depends on input order,
   set order or ``PYTHONHASHSEED``).
4. Each group goes, whole, to the split that first leaves the fewest (stratum, split) cells empty among
   the strata it touches (so every source x class reaches every split where it has enough groups), then
   minimises the squared error between achieved and target fractions over those strata; remaining
   ties go to the earlier split.

The CSV (columns :data:`CSV_COLUMNS`, one row per sample, sorted by uid) is plain, so it can be edited in
a spreadsheet; a JSON sidecar (``<csv>.json``) records seed, task, fractions, the excluded counts and
the chestlens version. Loading honours edits (moved rows, changed labels); ``chestlens data check``
reports any patient or near-duplicate overlap they introduce.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from chestlens import __version__
from chestlens.atomic import write_text_atomic
from chestlens.data.records import Sample
from chestlens.errors import ChestlensInputError

SPLITS = ("train", "val", "test")
CSV_COLUMNS = ("uid", "source", "path", "patient_id", "group", "label", "split")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)

#: Maps a sample to its class for a task, or None to leave it out.
LabelFn = Callable[[Sample], str | None]


@dataclass(frozen=True, slots=True)
class SplitRow:
    """One sample's place in a split; ``path`` is relative to the data root where possible (POSIX)."""

    uid: str
    source: str
    path: str
    patient_id: str
    group: str
    label: str
    split: str


@dataclass(frozen=True, slots=True)
class SplitMeta:
    """How a split was made (the JSON sidecar); unknown fields are None for hand-made CSVs."""

    seed: int | None = None
    task: str | None = None
    fractions: tuple[float, ...] | None = None
    excluded: dict[str, int] = field(default_factory=dict)
    chestlens_version: str | None = None


@dataclass(frozen=True, slots=True)
class SplitTable:
    """Rows sorted by uid, plus how they were made."""

    rows: tuple[SplitRow, ...]
    meta: SplitMeta = SplitMeta()

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with columns :data:`CSV_COLUMNS`."""
        return pd.DataFrame([asdict(r) for r in self.rows], columns=list(CSV_COLUMNS))

    def split_of(self) -> dict[str, str]:
        """uid -> split name."""
        return {r.uid: r.split for r in self.rows}

    def select(self, samples: Sequence[Sample], split: str) -> list[Sample]:
        """The samples in ``split``, in row order (uids this table does not list are skipped)."""
        return [sample for sample, _, _ in self.labelled(samples, split)]

    def labelled(self, samples: Sequence[Sample], split: str) -> list[tuple[Sample, str, str]]:
        """``(sample, label, patient group)`` of the rows in ``split`` whose uid is among ``samples``,
        in row order."""
        by_uid = {s.uid: s for s in samples}
        return [(by_uid[r.uid], r.label, r.group) for r in self.rows if r.split == split and r.uid in by_uid]

    def achieved(self) -> pd.DataFrame:
        """Per ``(source, label)``: sample count and the fraction in each split (rows sum to 1)."""
        frame = self.frame()
        counts = pd.crosstab([frame["source"], frame["label"]], frame["split"])
        counts = counts.reindex(columns=list(SPLITS), fill_value=0)
        total = counts.sum(axis=1)
        out = counts.div(total, axis=0)
        out.insert(0, "n", total)
        return out


def make_splits(
    samples: Sequence[Sample],
    label_fn: LabelFn,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    groups: Mapping[str, str] | None = None,
    task: str | None = None,
    root: Path | None = None,
) -> SplitTable:
    """Split samples into train/val/test by patient group, stratified by source and label.

    Args:
        samples: samples of any number of sources.
        label_fn: class of a sample for the task, or None to leave it out.
        fractions: target fractions of train, val and test (non-negative, sum 1).
        seed: random seed; the same inputs and seed give the same table.
        groups: uid -> linked group id (from :func:`chestlens.data.linking.link_samples`); default:
            the sample's ``patient_id``.
        task: task name, recorded in the metadata.
        root: data root; paths below it are stored relative to it.
    """
    targets = _check_fractions(fractions)
    labelled: list[tuple[Sample, str]] = []
    excluded: dict[str, int] = {}
    for sample in sorted(samples, key=lambda s: s.uid):
        label = label_fn(sample)
        if label is None:
            excluded[sample.source] = excluded.get(sample.source, 0) + 1
        else:
            labelled.append((sample, label))
    group_of = {s.uid: (groups or {}).get(s.uid) or s.patient_id or s.uid for s, _ in labelled}
    assignment = _allocate(labelled, group_of, targets, seed)
    rows = tuple(
        SplitRow(
            uid=s.uid,
            source=s.source,
            path=_relative(Path(s.path), root),
            patient_id=s.patient_id,
            group=group_of[s.uid],
            label=label,
            split=SPLITS[assignment[group_of[s.uid]]],
        )
        for s, label in labelled
    )
    meta = SplitMeta(
        seed, task, tuple(float(f) for f in targets), dict(sorted(excluded.items())), __version__
    )
    return SplitTable(rows, meta)


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=float)
    if values.shape != (len(SPLITS),) or (values < 0).any() or abs(values.sum() - 1.0) > 1e-6:
        raise ChestlensInputError(
            None, f"fractions must be {len(SPLITS)} non-negative numbers summing to 1, got {list(fractions)}"
        )
    return values


def _allocate(
    labelled: list[tuple[Sample, str]], group_of: dict[str, str], targets: np.ndarray, seed: int
) -> dict[str, int]:
    """Greedy group -> split index allocation (see the module docstring)."""
    strata = sorted({(s.source, label) for s, label in labelled})
    stratum_index = {st: k for k, st in enumerate(strata)}
    group_ids = sorted(set(group_of.values()))
    counts: dict[str, dict[int, int]] = {g: {} for g in group_ids}
    totals = np.zeros(len(strata))
    for sample, label in labelled:
        k = stratum_index[(sample.source, label)]
        cell = counts[group_of[sample.uid]]
        cell[k] = cell.get(k, 0) + 1
        totals[k] += 1
    rank = np.random.default_rng(seed).permutation(len(group_ids))
    order = sorted(range(len(group_ids)), key=lambda i: (-sum(counts[group_ids[i]].values()), rank[i]))
    current = np.zeros((len(strata), len(SPLITS)))
    open_cells = targets > 0
    assignment: dict[str, int] = {}
    for i in order:
        group = group_ids[i]
        touched = np.array(sorted(counts[group]))
        added = np.array([counts[group][k] for k in touched], dtype=float)
        options = []
        for split in range(len(SPLITS)):
            trial = current[touched].copy()
            trial[:, split] += added
            empty = int(((trial == 0) & open_cells).sum())
            error = float((((trial / totals[touched, None]) - targets) ** 2).sum())
            options.append((empty, error, split))
        choice = min(options)[2]
        current[touched, choice] += added
        assignment[group] = choice
    return assignment


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def sidecar_path(csv_path: Path) -> Path:
    """The JSON metadata file that goes with a split CSV (``splits.csv`` -> ``splits.csv.json``)."""
    return csv_path.with_name(csv_path.name + ".json")


def save_splits(table: SplitTable, csv_path: Path) -> None:
    """Write the CSV and its JSON sidecar, each atomically (temporary file, then ``os.replace``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.rows:
        writer.writerow([getattr(row, c) for c in CSV_COLUMNS])
    meta = asdict(table.meta)
    meta["fractions"] = list(table.meta.fractions) if table.meta.fractions is not None else None
    meta["columns"] = list(CSV_COLUMNS)
    write_text_atomic(csv_path, buffer.getvalue())
    write_text_atomic(sidecar_path(csv_path), json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_splits(csv_path: Path, samples: Sequence[Sample] | None = None) -> SplitTable:
    """Read a split CSV (and its sidecar if present), checking every row.

    Args:
        csv_path: the CSV, possibly edited by hand (extra columns are ignored; rows may be in any order).
        samples: when given, every row's uid must be one of these samples.

    Raises:
        ChestlensInputError: naming the CSV and the line, for a missing column, an empty field, an
            unknown split name, a repeated uid, or (with ``samples``) an unknown uid.
    """
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ChestlensInputError(csv_path, f"cannot read split CSV: {error.strerror or error}") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ChestlensInputError(csv_path, f"split CSV lacks column(s) {', '.join(missing)}")
    known = {s.uid for s in samples} if samples is not None else None
    rows: dict[str, SplitRow] = {}
    for record in reader:
        line = reader.line_num
        values = {c: (record.get(c) or "").strip() for c in CSV_COLUMNS}
        if not any(values.values()):
            continue  # blank line left by a spreadsheet
        for column in ("uid", "label", "split"):
            if not values[column]:
                raise ChestlensInputError(csv_path, f"line {line}: empty {column}")
        if values["split"] not in SPLITS:
            raise ChestlensInputError(
                csv_path, f"line {line}: split {values['split']!r} is not one of {', '.join(SPLITS)}"
            )
        if values["uid"] in rows:
            raise ChestlensInputError(csv_path, f"line {line}: uid {values['uid']!r} appears twice")
        if known is not None and values["uid"] not in known:
            raise ChestlensInputError(
                csv_path, f"line {line}: uid {values['uid']!r} is not a sample of the loaded data"
            )
        values["group"] = values["group"] or values["patient_id"] or values["uid"]
        rows[values["uid"]] = SplitRow(**values)
    return SplitTable(tuple(rows[u] for u in sorted(rows)), _load_meta(csv_path))


def _load_meta(csv_path: Path) -> SplitMeta:
    path = sidecar_path(csv_path)
    if not path.is_file():
        return SplitMeta()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        fractions = raw.get("fractions")
        return SplitMeta(
            seed=raw.get("seed"),
            task=raw.get("task"),
            fractions=tuple(float(f) for f in fractions) if fractions is not None else None,
            excluded={str(k): int(v) for k, v in (raw.get("excluded") or {}).items()},
            chestlens_version=raw.get("chestlens_version"),
        )
    except (ValueError, TypeError, AttributeError) as error:
        raise ChestlensInputError(path, f"unreadable split metadata: {error}") from None
