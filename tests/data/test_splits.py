"""Patient-level stratified splits, the split CSV, leakage checks and confounder summaries."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from chestlens.data.check import check
from chestlens.data.duplicates import NearDuplicate
from chestlens.data.linking import link_samples
from chestlens.data.records import Sample
from chestlens.data.splits import (
    CSV_COLUMNS,
    SPLITS,
    load_splits,
    make_splits,
    save_splits,
    sidecar_path,
)
from chestlens.data.summary import age_band, summarize
from chestlens.errors import ChestlensInputError

ROOT = Path("/data/root")
# source -> (classes, patients per class)
COHORT = {
    "alpha": (("normal", "pneumonia"), 120),
    "beta": (("COVID-19", "pneumonia"), 60),
    "gamma": (("COVID-19", "normal"), 6),
}


def _label(sample: Sample) -> str | None:
    return None if sample.findings[0] == "unlabelled" else sample.findings[0]


def cohort(seed: int = 0) -> list[Sample]:
    """Synthetic multi-source samples: 1-4 images per patient, some patients with two classes."""
    rng = random.Random(seed)
    samples = []
    for source, (classes, n_patients) in COHORT.items():
        for label in classes:
            for p in range(n_patients):
                patient = f"{source}:{label}-{p}"
                labels = [label] * rng.randint(1, 4)
                if rng.random() < 0.1:
                    labels.append(classes[0] if label != classes[0] else classes[1])
                if rng.random() < 0.05:
                    labels.append("unlabelled")
                for k, finding in enumerate(labels):
                    age = 8.0 if source == "alpha" and finding == "normal" else 30.0 + p % 50
                    samples.append(
                        Sample(
                            source=source,
                            uid=f"{source}/{label}/{p}-{k}.png",
                            path=ROOT / source / label / f"{p}-{k}.png",
                            patient_id=patient,
                            findings=(finding,),
                            modality="xray",
                            view="PA" if k % 2 else "AP",
                            sex="MF"[p % 2],
                            age=age,
                        )
                    )
    return samples


def test_same_seed_gives_byte_identical_files_and_input_order_does_not_matter(tmp_path: Path) -> None:
    samples = cohort()
    shuffled = list(samples)
    random.Random(5).shuffle(shuffled)
    save_splits(make_splits(samples, _label, seed=3, root=ROOT), tmp_path / "a.csv")
    save_splits(make_splits(shuffled, _label, seed=3, root=ROOT), tmp_path / "b.csv")
    save_splits(make_splits(samples, _label, seed=4, root=ROOT), tmp_path / "c.csv")
    a, b, c = ((tmp_path / f"{n}.csv").read_bytes() for n in "abc")
    assert a == b
    assert sidecar_path(tmp_path / "a.csv").read_bytes() == sidecar_path(tmp_path / "b.csv").read_bytes()
    assert a != c
    assert a.decode().splitlines()[0] == ",".join(CSV_COLUMNS)
    assert "alpha/normal/0-0.png" in a.decode()  # relative to the data root


def test_groups_never_straddle_splits() -> None:
    samples = cohort()
    # join some patients across sources, as near-duplicate links would
    groups = {s.uid: s.patient_id for s in samples}
    for s in samples:
        number = s.patient_id.rsplit("-", 1)[1]
        if s.source == "beta" and number in {"1", "2", "3"}:
            groups[s.uid] = f"alpha:normal-{number}"
    table = make_splits(samples, _label, seed=0, groups=groups)
    sides: dict[str, set[str]] = {}
    for row in table.rows:
        sides.setdefault(row.group, set()).add(row.split)
    assert all(len(v) == 1 for v in sides.values())
    assert {r.group for r in table.rows if r.source == "beta" and r.patient_id == "beta:COVID-19-1"} == {
        "alpha:normal-1"
    }


def test_stratified_by_source_and_class() -> None:
    table = make_splits(cohort(), _label, fractions=(0.7, 0.15, 0.15), seed=1)
    achieved = table.achieved()
    for (source, label), row in achieved.iterrows():
        assert all(row[s] > 0 for s in SPLITS), (source, label)  # every stratum reaches every split
        if row["n"] >= 100:
            assert abs(row["train"] - 0.70) < 0.04 and abs(row["val"] - 0.15) < 0.04, (source, label, row)
    small = achieved.loc[("gamma", "normal")]
    assert small["n"] < 20  # 6 patients still spread over the three splits


def test_excluded_samples_are_counted() -> None:
    samples = cohort()
    table = make_splits(samples, _label, seed=0)
    unlabelled = sum(1 for s in samples if s.findings[0] == "unlabelled")
    assert sum(table.meta.excluded.values()) == unlabelled > 0
    assert len(table.rows) == len(samples) - unlabelled


def test_fractions_are_checked() -> None:
    with pytest.raises(ChestlensInputError, match="fractions"):
        make_splits(cohort(), _label, fractions=(0.8, 0.3, 0.1))
    table = make_splits(cohort(), _label, fractions=(0.8, 0.0, 0.2))
    assert {r.split for r in table.rows} == {"train", "test"}


def test_csv_round_trip(tmp_path: Path) -> None:
    samples = cohort()
    table = make_splits(samples, _label, seed=2, task="toy", root=ROOT)
    save_splits(table, tmp_path / "splits.csv")
    loaded = load_splits(tmp_path / "splits.csv", samples)
    assert loaded == table
    meta = json.loads(sidecar_path(tmp_path / "splits.csv").read_text())
    assert meta["seed"] == 2 and meta["task"] == "toy" and meta["fractions"] == [0.7, 0.15, 0.15]
    assert len(table.select(samples, "test")) == sum(r.split == "test" for r in table.rows)


def _edit(path: Path, line: int, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    cells = lines[line - 1].split(",")
    cells[CSV_COLUMNS.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("uid", "alpha/nope.png", "line 3: uid 'alpha/nope.png' is not a sample"),
        ("split", "holdout", "line 3: split 'holdout' is not one of train, val, test"),
        ("label", "", "line 3: empty label"),
        ("uid", "SECOND", "line 3: uid .* appears twice"),
    ],
)
def test_bad_csv_rows_name_the_file_and_line(tmp_path: Path, column: str, value: str, message: str) -> None:
    samples = cohort()
    path = tmp_path / "splits.csv"
    save_splits(make_splits(samples, _label), path)
    if value == "SECOND":
        value = path.read_text().splitlines()[1].split(",")[0]
    _edit(path, 3, column, value)
    with pytest.raises(ChestlensInputError, match=message) as error:
        load_splits(path, samples)
    assert str(path) in str(error.value)


def test_missing_column_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "splits.csv"
    path.write_text("uid,split\nalpha/normal/0-0.png,train\n")
    with pytest.raises(ChestlensInputError, match="lacks column"):
        load_splits(path)
    with pytest.raises(ChestlensInputError, match="cannot read"):
        load_splits(tmp_path / "absent.csv")


def test_user_edits_are_honoured_and_check_flags_the_overlap(tmp_path: Path) -> None:
    samples = cohort()
    groups = link_samples(samples)
    path = tmp_path / "splits.csv"
    save_splits(make_splits(samples, _label, groups=groups.group_of), path)
    assert check(samples, groups, [], load_splits(path, samples)).clean
    rows = path.read_text().splitlines()
    line = next(i for i, r in enumerate(rows) if r.startswith("alpha/normal/0-0.png")) + 1
    side = rows[line - 1].split(",")[-1]
    moved = "test" if side != "test" else "train"
    _edit(path, line, "split", moved)
    edited = load_splits(path, samples)
    assert edited.split_of()["alpha/normal/0-0.png"] == moved
    report = check(samples, groups, [], edited)
    assert not report.clean
    assert [o.group for o in report.patient_overlap] == ["alpha:normal-0"]
    # a near-duplicate pair across splits is reported as such
    other = next(r for r in edited.rows if r.split != moved)
    pair = NearDuplicate(*sorted(("alpha/normal/0-0.png", other.uid)), 4, 3)
    report = check(samples, groups, [pair], edited)
    assert [d.pair for d in report.duplicate_overlap] == [pair]


def test_summary_shows_the_confounding() -> None:
    samples = cohort()
    table = make_splits(samples, _label, seed=0)
    result = summarize(samples, table=table)
    assert list(result.counts.columns) == [*SPLITS, "total"]
    assert result.counts["total"].sum() == len(table.rows)
    assert result.counts.loc[("alpha", "normal"), "total"] > 0
    text = "\n".join(result.warnings)
    assert "class 'normal': 9" in text and "age band <18" in text
    assert "source alpha: all" in text and "children" in text
    json.dumps(result.to_dict())  # JSON-able
    plain = summarize(samples, _label)
    assert list(plain.counts.columns) == ["all", "total"]
    assert sum(plain.excluded.values()) > 0


def test_summary_single_source_class_and_missing_split() -> None:
    samples = [s for s in cohort() if not (s.source == "gamma" and _label(s) == "COVID-19")]
    only_beta = summarize(samples, _label)
    assert any("class 'COVID-19': all" in w and "(beta)" in w for w in only_beta.warnings)
    table = make_splits(samples, _label)
    rows = tuple(replace(r, split="train") if r.source == "gamma" else r for r in table.rows)
    result = summarize(samples, table=replace(table, rows=rows))
    assert any(w.startswith("gamma/normal") and "none in val, test" in w for w in result.warnings)


def test_age_bands() -> None:
    base = cohort()[0]
    assert [age_band(replace(base, age=a)) for a in (3, 18, 39.9, 40, 64, 65, 90)] == [
        "<18",
        "18-39",
        "18-39",
        "40-64",
        "40-64",
        "65+",
        "65+",
    ]
    assert age_band(replace(base, age=None, extra={"age_band": "child"})) == "<18"
    assert age_band(replace(base, age=None)) == "unknown"
