"""What a dataset (or a split of it) holds, and what a classifier could learn instead of disease.

:func:`summarize` counts samples per source x class x split and tabulates, per class x split, the
confounders a model can pick up: age band, sex, view and source. Its warnings state the confounding in
plain words, from these rules (thresholds below):

* a class whose samples all come from one source (when there are several classes);
* a class whose samples come mostly (at least :data:`GAP`) from sources that hold no other class, so
  the source alone gives the class away;
* a class where one value of a confounder (a source, an age band, a sex, a view, or "unknown") is at
  least :data:`GAP` (50 percentage points) more or less common than in the other classes, e.g.
  "class 'COVID-19': 0% of samples have age band <18 (vs 70% in the other classes)";
* a source whose samples of one class are all children (every known age under 18);
* with a split table, a source x class present in the data but absent from a split.

:func:`source_contrasts` answers the other side of the question: which sources hold two or more
classes of a task (a *within-source contrast*, where a model cannot win by recognising the source),
and, per view, whether the classes still meet there (Actualmed: COVID-19 mostly AP, negatives mostly
PA). ``chestlens data summary`` prints it; a model card can reuse it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from chestlens.data.records import Sample
from chestlens.data.sources import patient_namespace
from chestlens.data.splits import SPLITS, LabelFn, SplitTable
from chestlens.data.tasks import Task, get_task

AGE_BANDS = ("<18", "18-39", "40-64", "65+", "unknown")
CONFOUNDERS = ("age_band", "sex", "view", "source")
UNKNOWN = "unknown"
#: Share difference (0-1) between a class and the other classes that triggers a warning.
GAP = 0.5
#: Smallest class (samples) and source x class (samples) the warning rules look at.
MIN_SAMPLES = 10
#: Split name used when no split table is given.
ALL = "all"
_COHORT_BANDS = {"child": "<18", "children": "<18", "pediatric": "<18", "paediatric": "<18"}


def age_band(sample: Sample) -> str:
    """``<18``, ``18-39``, ``40-64``, ``65+`` from ``sample.age`` (years), else ``extra["age_band"]``.

    Sources without per-image ages but with a known cohort record it in ``extra["age_band"]``
    (Kermany: ``child`` -> ``<18``); anything else is ``unknown``.
    """
    if sample.age is not None:
        for band, upper in (("<18", 18), ("18-39", 40), ("40-64", 65)):
            if sample.age < upper:
                return band
        return "65+"
    band = (sample.extra or {}).get("age_band", UNKNOWN)
    band = _COHORT_BANDS.get(band.lower(), band)
    return band if band in AGE_BANDS else UNKNOWN


def confounder_values(sample: Sample) -> dict[str, str]:
    """The confounder values of one sample (missing ones are ``unknown``; the view falls back to a
    cohort-level ``extra["cohort_view"]``, e.g. Kermany's AP films)."""
    return {
        "age_band": age_band(sample),
        "sex": sample.sex or UNKNOWN,
        "view": sample.view or (sample.extra or {}).get("cohort_view") or UNKNOWN,
        "source": sample.source,
    }


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts and confounders of labelled samples.

    Attributes:
        counts: rows ``(source, label)``, one column per split and ``total``; sample counts.
        confounders: confounder name -> rows ``(label, split)``, one column per value; sample counts.
        excluded: source -> samples left out because the task gives them no label.
        warnings: plain-language confounding findings.
    """

    counts: pd.DataFrame
    confounders: dict[str, pd.DataFrame]
    excluded: dict[str, int]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: long-format records for the tables."""
        counts = [
            {"source": source, "label": label, "split": split, "n": int(n)}
            for (source, label), row in self.counts.drop(columns="total").iterrows()
            for split, n in row.items()
        ]
        confounders = {
            name: [
                {"label": label, "split": split, "value": value, "n": int(n)}
                for (label, split), row in frame.iterrows()
                for value, n in row.items()
                if n
            ]
            for name, frame in self.confounders.items()
        }
        return {
            "counts": counts,
            "confounders": confounders,
            "excluded": dict(self.excluded),
            "warnings": list(self.warnings),
        }


def summarize(
    samples: Sequence[Sample], label_fn: LabelFn | None = None, table: SplitTable | None = None
) -> Summary:
    """Count and tabulate labelled samples.

    Args:
        samples: the loaded samples (their metadata gives the confounders).
        label_fn: class of a sample for the task, or None to leave it out; used without ``table``.
        table: a split table; its labels and splits are used, and only its rows are counted.
    """
    frame, excluded = _records(samples, label_fn, table)
    splits = [s for s in SPLITS if s in set(frame["split"])] if table is not None else [ALL]
    counts = pd.crosstab([frame["source"], frame["label"]], frame["split"])
    counts = counts.reindex(columns=splits, fill_value=0)
    counts["total"] = counts.sum(axis=1)
    rows = pd.MultiIndex.from_tuples(
        sorted({(lab, s) for lab, s in zip(frame["label"], frame["split"], strict=True)}, key=_row_order),
        names=["label", "split"],
    )
    confounders = {}
    for name in CONFOUNDERS:
        table_ = pd.crosstab([frame["label"], frame["split"]], frame[name]).reindex(rows, fill_value=0)
        if name == "age_band":
            table_ = table_.reindex(columns=[b for b in AGE_BANDS if b in table_.columns])
        confounders[name] = table_
    warnings = _warnings(frame) + (_split_warnings(frame, splits) if table is not None else [])
    return Summary(counts, confounders, excluded, tuple(warnings))


def _row_order(row: tuple[str, str]) -> tuple[str, int]:
    label, split = row
    return label, SPLITS.index(split) if split in SPLITS else -1


def _records(
    samples: Sequence[Sample], label_fn: LabelFn | None, table: SplitTable | None
) -> tuple[pd.DataFrame, dict[str, int]]:
    by_uid = {s.uid: s for s in samples}
    records = []
    excluded: dict[str, int] = {}
    if table is not None:
        for row in table.rows:
            sample = by_uid.get(row.uid)
            values = confounder_values(sample) if sample is not None else dict.fromkeys(CONFOUNDERS, UNKNOWN)
            values["source"] = row.source
            records.append({"label": row.label, "split": row.split, **values})
        excluded = dict(table.meta.excluded)
    else:
        if label_fn is None:
            raise ValueError("summarize needs a label_fn or a split table")
        for uid in sorted(by_uid):
            label = label_fn(by_uid[uid])
            if label is None:
                excluded[by_uid[uid].source] = excluded.get(by_uid[uid].source, 0) + 1
            else:
                records.append({"label": label, "split": ALL, **confounder_values(by_uid[uid])})
    columns = ["label", "split", *CONFOUNDERS]
    return pd.DataFrame(records, columns=columns), dict(sorted(excluded.items()))


def _warnings(frame: pd.DataFrame) -> list[str]:
    out: list[str] = []
    labels = sorted(set(frame["label"]))
    if len(labels) < 2:
        return out
    classes_of = frame.groupby("source")["label"].unique()
    single = {s: c[0] for s, c in classes_of.items() if len(c) == 1}
    for label in labels:
        mine = frame[frame["label"] == label]
        rest = frame[frame["label"] != label]
        sources = sorted(set(mine["source"]))
        if len(sources) == 1:
            out.append(f"class {label!r}: all {len(mine)} samples come from a single source ({sources[0]})")
        if len(mine) < MIN_SAMPLES:
            continue
        own = sorted(s for s in sources if single.get(s) == label)
        own_share = mine["source"].isin(own).mean()
        if len(sources) > 1 and own_share >= GAP:
            out.append(
                f"class {label!r}: {own_share:.0%} of samples come from sources with no other class "
                f"({', '.join(own)}): the source gives the class away"
            )
        for name in CONFOUNDERS:
            share = mine[name].value_counts(normalize=True)
            other = rest[name].value_counts(normalize=True)
            for value in sorted(set(share.index) | set(other.index)):
                mine_share, other_share = share.get(value, 0.0), other.get(value, 0.0)
                if abs(mine_share - other_share) >= GAP:
                    out.append(
                        f"class {label!r}: {mine_share:.0%} of samples have {name.replace('_', ' ')} "
                        f"{value} (vs {other_share:.0%} in the other classes)"
                    )
        for source in sources:
            ages = mine.loc[(mine["source"] == source) & (mine["age_band"] != UNKNOWN), "age_band"]
            if len(ages) >= MIN_SAMPLES and (ages == "<18").all():
                out.append(
                    f"source {source}: all {len(ages)} {label!r} samples with a known age are children (<18)"
                )
    return out


def _split_warnings(frame: pd.DataFrame, splits: list[str]) -> list[str]:
    out = []
    cells = frame.groupby(["source", "label", "split"]).size()
    for (source, label), n in frame.groupby(["source", "label"]).size().items():
        missing = [s for s in splits if (source, label, s) not in cells.index]
        if missing:
            out.append(f"{source}/{label} ({n} samples) has none in {', '.join(missing)}")
    return out


@dataclass(frozen=True, slots=True)
class SourceContrast:
    """The classes of one task that one source holds, overall and per view.

    Attributes:
        source: ``Sample.source``.
        images: class -> labelled images (every class of the task, in task order; 0 where absent).
        patients: class -> distinct ``patient_id`` values among those images.
        views: view -> class -> images (classes in task order, 0 where absent), views sorted, ``unknown``
            for images without one; empty when no image of the source has a view.
        patient_namespaces: :func:`~chestlens.data.sources.patient_namespace` of the labelled images'
            patient ids, sorted; a source that shares another dataset's patients shows its namespace
            (radiopaedia: ``ieee8023``), and equal ids across such sources are one patient.
        excluded: images of the source that the task leaves out (no label, other modality).
    """

    source: str
    images: Mapping[str, int]
    patients: Mapping[str, int]
    views: Mapping[str, Mapping[str, int]]
    patient_namespaces: tuple[str, ...]
    excluded: int

    @property
    def classes(self) -> tuple[str, ...]:
        """Classes with at least one image, in task order."""
        return tuple(label for label, n in self.images.items() if n)

    @property
    def within_source(self) -> bool:
        """True when two or more classes coexist in this source (a within-source contrast)."""
        return len(self.classes) >= 2

    @property
    def contrast_views(self) -> tuple[str, ...]:
        """Views in which two or more classes coexist (sorted); empty without per-image views."""
        return tuple(view for view, row in self.views.items() if sum(n > 0 for n in row.values()) >= 2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, with :attr:`classes`, :attr:`within_source` and :attr:`contrast_views`."""
        return {
            "source": self.source,
            "classes": list(self.classes),
            "within_source": self.within_source,
            "images": dict(self.images),
            "patients": dict(self.patients),
            "views": {view: dict(row) for view, row in self.views.items()},
            "contrast_views": list(self.contrast_views),
            "patient_namespaces": list(self.patient_namespaces),
            "excluded": self.excluded,
        }


def source_contrasts(samples: Iterable[Sample], task: Task | str) -> list[SourceContrast]:
    """Per source, which classes of ``task`` it holds (sources with at least one labelled image).

    Args:
        samples: samples of any number of sources.
        task: a classification task or its name (``"xray3"``).

    Returns:
        One :class:`SourceContrast` per source, sorted by source name.
    """
    task = get_task(task) if isinstance(task, str) else task
    labelled: dict[str, list[tuple[Sample, str]]] = {}
    excluded: dict[str, int] = {}
    for sample in samples:
        label = task.mapping(sample)
        if label is None:
            excluded[sample.source] = excluded.get(sample.source, 0) + 1
        else:
            labelled.setdefault(sample.source, []).append((sample, label))
    return [
        _contrast(source, task.classes, rows, excluded.get(source, 0))
        for source, rows in sorted(labelled.items())
    ]


def _contrast(
    source: str, classes: tuple[str, ...], rows: list[tuple[Sample, str]], excluded: int
) -> SourceContrast:
    images = dict.fromkeys(classes, 0)
    patients: dict[str, set[str]] = {label: set() for label in classes}
    views: dict[str, dict[str, int]] = {}
    has_views = any(sample.view for sample, _ in rows)
    for sample, label in rows:
        images[label] += 1
        patients[label].add(sample.patient_id)
        if has_views:
            views.setdefault(sample.view or UNKNOWN, dict.fromkeys(classes, 0))[label] += 1
    return SourceContrast(
        source=source,
        images=images,
        patients={label: len(ids) for label, ids in patients.items()},
        views=dict(sorted(views.items())),
        patient_namespaces=tuple(sorted({patient_namespace(s.patient_id) for s, _ in rows})),
        excluded=excluded,
    )
