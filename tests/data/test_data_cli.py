"""``chestlens data sources|summary|check|split`` on synthetic images and on the shared real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from chestlens.cli import app, data_cmd, main
from chestlens.data import make_split
from chestlens.data.records import Sample
from chestlens.data.sources.ieee8023 import shared_file_patient_links
from chestlens.data.splits import CSV_COLUMNS, load_splits

runner = CliRunner()


def _picture(seed: int) -> np.ndarray:
    coarse = np.random.default_rng(seed).random((8, 8)) * 255
    return np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((128, 128), Image.Resampling.BICUBIC))


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root of 48 synthetic images; ``beta/copy.png`` re-encodes ``alpha/p0-0.png`` (other patient)."""
    samples = []
    for p in range(24):
        source = "alpha" if p < 16 else "beta"
        classes = ("normal", "pneumonia", "COVID-19") if source == "beta" else ("normal", "pneumonia")
        finding = classes[p % len(classes)]
        for k in range(2):
            path = tmp_path / source / f"p{p}-{k}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(_picture(100 * p + k)).save(path)
            samples.append(Sample(source, f"{source}/{path.name}", path, f"{source}:{p}", (finding,), "xray"))
    copy = tmp_path / "beta" / "copy.jpg"
    Image.open(tmp_path / "alpha" / "p0-0.png").resize((100, 100)).save(copy, quality=80)
    samples.append(Sample("beta", "beta/copy.jpg", copy, "beta:99", ("normal",), "xray"))
    monkeypatch.setattr(data_cmd, "_load", lambda root, names: list(samples))
    monkeypatch.setattr(make_split, "load_samples", lambda root, names=None: list(samples))
    return tmp_path


def _run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["data", *args])
    assert result.exit_code == code, (result.output, result.exception)
    return result.stdout


def test_split_is_reproducible_and_keeps_the_copy_with_its_original(toy: Path) -> None:
    common = ("--root", str(toy), "--hash-cache", str(toy / "hashes.sqlite"))
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        _run("split", *common, "--out", str(toy / f"{name}.csv"), "--seed", seed)
    a, b, c = ((toy / f"{n}.csv").read_bytes() for n in "abc")
    assert a == b and a != c
    rows = {r.uid: r for r in load_splits(toy / "a.csv").rows}
    assert rows["beta/copy.jpg"].group == rows["alpha/p0-0.png"].group == "alpha:0"
    assert rows["beta/copy.jpg"].split == rows["alpha/p0-0.png"].split
    assert rows["alpha/p0-0.png"].path == "alpha/p0-0.png"


def test_check_is_clean_then_flags_an_edit(toy: Path) -> None:
    common = ("--root", str(toy), "--hash-cache", str(toy / "hashes.sqlite"))
    csv_path = toy / "splits.csv"
    _run("split", *common, "--out", str(csv_path))
    report = json.loads(_run("check", *common, "--splits", str(csv_path), "--json"))
    assert report["clean"] and report["n_split_rows"] == 49
    assert [(p["a"], p["b"]) for p in report["near_duplicates"]] == [("alpha/p0-0.png", "beta/copy.jpg")]
    assert [g["patient_ids"] for g in report["linked_groups"]] == [["alpha:0", "beta:99"]]
    lines = csv_path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("beta/copy.jpg"))
    cells = lines[index].split(",")
    cells[CSV_COLUMNS.index("split")] = "val" if cells[-1] != "val" else "test"
    lines[index] = ",".join(cells)
    csv_path.write_text("\n".join(lines) + "\n")
    assert "LEAK" in _run("check", *common, "--splits", str(csv_path), code=1)
    report = json.loads(_run("check", *common, "--splits", str(csv_path), "--json", code=1))
    assert [o["group"] for o in report["patient_overlap"]] == ["alpha:0"]
    assert len(report["duplicate_overlap"]) == 1


def test_summary_counts(toy: Path) -> None:
    plain = json.loads(_run("summary", "--root", str(toy), "--json"))
    assert sum(c["n"] for c in plain["counts"]) == 49 and {c["split"] for c in plain["counts"]} == {"all"}
    csv_path = toy / "splits.csv"
    _run("split", "--root", str(toy), "--out", str(csv_path), "--no-hash-cache", "--workers", "1")
    split = json.loads(_run("summary", "--root", str(toy), "--splits", str(csv_path), "--json"))
    assert sum(c["n"] for c in split["counts"]) == 49
    assert {c["split"] for c in split["counts"]} == {"train", "val", "test"}
    text = _run("summary", "--root", str(toy), "--splits", str(csv_path))
    assert "Samples per source x class x split" in text and "age band per class x split" in text


def test_bad_input_exits_2_with_one_line(toy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = toy / "bad.csv"
    bad.write_text(",".join(CSV_COLUMNS) + "\nalpha/p0-0.png,alpha,p,alpha:0,alpha:0,normal,later\n")
    with pytest.raises(SystemExit) as stop:
        main(["data", "summary", "--root", str(toy), "--splits", str(bad)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "bad.csv: line 2: split 'later'" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as stop:
        main(["data", "split", "--root", str(toy), "--out", str(toy / "x.csv"), "--task", "nope"])
    assert stop.value.code == 2 and "unknown task 'nope'" in capsys.readouterr().err


def test_missing_data_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("chestlens.data.root.data_root", lambda explicit=None: None)
    result = runner.invoke(app, ["data", "sources"])
    assert result.exit_code != 0 and "no data root" in str(result.exception)


# --- real data -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One hashing pass over the shared data (cache in tmp), a split for xray3 and its check."""
    folder = tmp_path_factory.mktemp("real")
    cache = str(folder / "hashes.sqlite")
    common = ("--root", str(shared_data), "--hash-cache", cache)
    checked = json.loads(_run("check", *common, "--json"))
    csv_path = folder / "xray3.csv"
    _run("split", *common, "--task", "xray3", "--seed", "0", "--out", str(csv_path))
    again = folder / "again.csv"
    _run("split", *common, "--task", "xray3", "--seed", "0", "--out", str(again))
    split_check = json.loads(_run("check", *common, "--splits", str(csv_path), "--json"))
    summary = json.loads(_run("summary", "--root", str(shared_data), "--splits", str(csv_path), "--json"))
    return {
        "check": checked,
        "csv": csv_path,
        "same": csv_path.read_bytes() == again.read_bytes(),
        "split_check": split_check,
        "summary": summary,
    }


def _groups_with(report: dict, *patient_ids: str) -> list[dict]:
    return [g for g in report["linked_groups"] if set(patient_ids) <= set(g["patient_ids"])]


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_check_finds_the_known_duplicate_patients(real: dict, source_dir) -> None:
    report = real["check"]
    assert report["hash_failures"] == {}
    # every pair of ids metadata.csv lists for one file; 287+340 (also upstream) are in the holdout part
    shared_files = shared_file_patient_links(source_dir("covid-chestxray-dataset"))
    assert ("ieee8023:285", "ieee8023:339") in shared_files
    for ids in shared_files:
        (group,) = _groups_with(report, *ids)
        assert any("metadata lists this file" in link["reason"] for link in group["links"])
    (group,) = _groups_with(report, "ieee8023:97", "ieee8023:178")
    assert any(link["reason"].startswith("near-duplicate image") for link in group["links"])
    pairs = {(p["a"].rsplit("/", 1)[-1], p["b"].rsplit("/", 1)[-1]): p for p in report["near_duplicates"]}
    kermany = pairs[("person1430_bacteria_3695.jpeg", "person1430_bacteria_3696.jpeg")]
    assert kermany["phash_distance"] <= 2
    for k, day in zip((2, 3, 4, 5), ("admission", "day-1", "day-2", "day-3"), strict=True):
        name = f"covid-19-rapidly-progressive-acute-respiratory-distress-syndrome-ards-{day}.jpg"
        assert pairs[(f"16660_{k}_1.jpg", name)]["phash_distance"] <= 6


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_v7_and_generalblockchain_copies_share_the_ieee8023_patient(real: dict) -> None:
    rows = load_splits(real["csv"]).rows
    name = {r.uid: r.path.rsplit("/", 1)[-1] for r in rows}
    ieee = {name[r.uid]: r for r in rows if r.source == "ieee8023"}
    copies = [r for r in rows if r.source in ("v7_lungs", "generalblockchain") and name[r.uid] in ieee]
    assert len(copies) >= 40
    for row in copies:
        twin = ieee[name[row.uid]]
        assert (row.group, row.split) == (twin.group, twin.split), row.uid


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_xray3_split_has_no_overlap_and_is_reproducible(real: dict) -> None:
    report = real["split_check"]
    assert report["clean"] and report["patient_overlap"] == [] and report["duplicate_overlap"] == []
    assert report["n_split_rows"] > 1500
    assert real["same"]
    counts = real["summary"]["counts"]
    assert sum(c["n"] for c in counts) == report["n_split_rows"]
    by_cell = {(c["source"], c["label"], c["split"]): c["n"] for c in counts}
    for source, label in (("kermany", "normal"), ("nih", "pneumonia"), ("hannover", "COVID-19")):
        total = sum(by_cell[(source, label, s)] for s in ("train", "val", "test"))
        assert abs(by_cell[(source, label, "train")] / total - 0.70) < 0.03
    warnings = " ".join(real["summary"]["warnings"])
    assert "class 'COVID-19': 0% of samples have age band <18" in warnings


@pytest.mark.shared_data
def test_real_sources_lists_the_layouts(shared_data: Path) -> None:
    listed = json.loads(_run("sources", "--root", str(shared_data), "--json"))["sources"]
    found = {s["name"] for s in listed if s["found"]}
    assert {"ieee8023", "kermany", "nih", "hannover", "v7_lungs", "generalblockchain"} <= found
    assert {"radiopaedia", "actualmed", "figure1"} <= found
