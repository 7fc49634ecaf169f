"""Same-source contrast sources (Actualmed, radiopaedia rows of ieee8023, Figure 1) on the real files,
and :func:`chestlens.data.summary.source_contrasts`.

Counts are those of each folder's SOURCE.md.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from chestlens.cli import app
from chestlens.data.linking import link_samples
from chestlens.data.records import Sample
from chestlens.data.sources import (
    actualmed,
    figure1,
    ieee8023,
    kermany,
    patient_namespace,
    radiopaedia,
    read_table,
)
from chestlens.data.splits import make_splits
from chestlens.data.summary import source_contrasts
from chestlens.data.tasks import TASKS, diagnosis, map_label
from chestlens.errors import ChestlensInputError

runner = CliRunner()
BLANK = "(blank)"


def _by_label(samples: list[Sample], patient=lambda s: s.patient_id) -> dict[str, tuple[int, int]]:
    """Raw ``finding`` cell (``(blank)`` if empty) -> (images, distinct patients)."""
    out: dict[str, tuple[int, set[str]]] = {}
    for s in samples:
        n, ids = out.get(s.extra["finding"] or BLANK, (0, set()))
        out[s.extra["finding"] or BLANK] = (n + 1, ids | {patient(s)})
    return {label: (n, len(ids)) for label, (n, ids) in out.items()}


def _raw_patient(sample: Sample) -> str:
    """The row's own ``patientid`` (SOURCE.md counts these, before ieee8023's letter merge)."""
    return sample.extra["patientids"]


def _label_view(samples: list[Sample]) -> Counter[str]:
    return Counter(f"{s.extra['finding'] or BLANK} / {s.view or BLANK}" for s in samples)


def _unlabelled_everywhere(sample: Sample) -> bool:
    return sample.findings == () and all(map_label(task, sample) is None for task in TASKS)


@pytest.fixture(scope="module")
def actual(source_dir) -> list[Sample]:
    return actualmed.load(source_dir(actualmed.FOLDER))


@pytest.fixture(scope="module")
def radio(source_dir) -> list[Sample]:
    return radiopaedia.load(source_dir(radiopaedia.FOLDER))


@pytest.fixture(scope="module")
def fig1(source_dir) -> list[Sample]:
    return figure1.load(source_dir(figure1.FOLDER))


# --- Actualmed ---------------------------------------------------------------------------------------


def test_actualmed_counts_and_views(actual: list[Sample]) -> None:
    assert len(actual) == 40 and len({s.patient_id for s in actual}) == 39
    assert _by_label(actual) == {BLANK: (8, 8), "COVID-19": (18, 17), "No finding": (14, 14)}
    assert Counter(s.view for s in actual) == {"AP": 22, "PA": 18}
    assert _label_view(actual) == {
        f"{BLANK} / AP": 3,
        f"{BLANK} / PA": 5,
        "COVID-19 / AP": 16,
        "COVID-19 / PA": 2,
        "No finding / AP": 3,
        "No finding / PA": 11,
    }
    assert all(
        s.path.is_file() and s.modality == "xray" and s.patient_id.startswith("actualmed:") for s in actual
    )
    assert Counter(s.extra["dicom_modality"] for s in actual) == {"CR": 35, "DX": 5}
    assert all(s.extra["date"].startswith("2020-0") for s in actual)


def test_actualmed_inconclusive_is_not_negative(actual: list[Sample]) -> None:
    blank = [s for s in actual if not s.extra["finding"]]
    assert len(blank) == 8 and all(_unlabelled_everywhere(s) for s in blank)
    assert all("Inconclusive" in s.extra["notes"] for s in blank)
    labels = Counter(map_label("xray3", s) for s in actual)
    assert labels == {"COVID-19": 18, "normal": 14, None: 8}
    assert Counter(map_label("xray2-covid", s) for s in actual) == {"COVID-19": 18, "non-COVID": 14, None: 8}


# --- radiopaedia ---------------------------------------------------------------------------------------


def test_radiopaedia_counts_and_views(radio: list[Sample]) -> None:
    assert len(radio) == 59 and len({s.uid for s in radio}) == 59
    assert len({_raw_patient(s) for s in radio}) == 31
    assert _by_label(radio, _raw_patient) == {
        "COVID-19": (20, 11),
        "Chlamydophila": (1, 1),
        "Legionella": (1, 1),
        "Lipoid": (2, 2),
        "Mycoplasma Bacterial Pneumonia": (2, 1),
        "No Finding": (1, 1),
        "Pneumocystis": (6, 3),
        "Pneumonia": (25, 13),
        "Varicella": (1, 1),
    }
    assert Counter(s.view for s in radio) == {"AP": 19, "PA": 21, "AP Supine": 12, "L": 7}
    assert _label_view(radio)["Pneumonia / L"] == 4 and _label_view(radio)["COVID-19 / AP Supine"] == 7
    assert all(
        s.source == "radiopaedia" and s.extra["url"].startswith("https://radiopaedia.org/") for s in radio
    )
    patients = {
        label: len({s.patient_id for s in radio if map_label("xray3", s) == label})
        for label in ("COVID-19", "pneumonia", "normal")
    }
    assert patients == {"COVID-19": 9, "pneumonia": 18, "normal": 1}


def test_radiopaedia_patient_ids_are_ieee8023_ids(radio: list[Sample], source_dir) -> None:
    folder = source_dir(radiopaedia.FOLDER)
    records = ieee8023.read_records(folder / ieee8023.METADATA)
    assert [s.patient_id for s in radio] == [r.patient_id for r in records]
    for s in radio:
        (raw,) = s.extra["patientids"].split("|")
        assert s.patient_id == f"ieee8023:{ieee8023.canonical_patientid(raw)}"
        assert patient_namespace(s.patient_id) == radiopaedia.PATIENT_NAMESPACE == "ieee8023"
    assert len({s.patient_id for s in radio}) == 27  # 350a/b/c, 360a/b, 361a/b merged (ieee8023 rule)
    assert {s.extra["patientids"] for s in radio if s.patient_id == "ieee8023:350"} == {
        "350a",
        "350b",
        "350c",
    }


def test_radiopaedia_labels_follow_the_ieee8023_rules(radio: list[Sample]) -> None:
    for s in radio:
        assert diagnosis(s) == diagnosis(replace(s, source="ieee8023")), s.uid
    by_finding = {s.extra["finding"]: map_label("xray3", s) for s in radio}
    assert by_finding == {
        "COVID-19": "COVID-19",
        "No Finding": "normal",
        "Lipoid": None,  # non-infectious, left out as in ieee8023
        **dict.fromkeys(
            (
                "Pneumonia",
                "Pneumocystis",
                "Legionella",
                "Varicella",
                "Mycoplasma Bacterial Pneumonia",
                "Chlamydophila",
            ),
            "pneumonia",
        ),
    }
    assert Counter(s.view for s in radio if s.view == "L") == {"L": 7}  # laterals kept


def _write_ieee8023_folder(folder: Path, patientid: str) -> None:
    """A one-row ieee8023-format folder (not from radiopaedia) with a synthetic grey image."""
    (folder / "images").mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "images" / "x.png")
    (folder / "metadata.csv").write_text(
        "patientid,finding,view,modality,folder,filename,url\n"
        f"{patientid},COVID-19,PA,X-ray,images,x.png,https://www.eurorad.org/case/1\n"
    )


def test_radiopaedia_and_ieee8023_patients_group_together(radio: list[Sample], source_dir, tmp_path) -> None:
    ieee = ieee8023.load(source_dir(ieee8023.FOLDER))
    # The shared copies have no patient in both folders ...
    assert {s.patient_id for s in ieee}.isdisjoint({s.patient_id for s in radio})
    # ... so check the mechanism with an ieee8023 folder listing radiopaedia case 350c.
    _write_ieee8023_folder(tmp_path / "ieee", "350c")
    assert ieee8023.detect(tmp_path / "ieee") and not radiopaedia.detect(tmp_path / "ieee")
    (extra,) = ieee8023.load(tmp_path / "ieee")
    samples = [*ieee, *radio, extra]
    family = [s.uid for s in samples if s.patient_id == "ieee8023:350"]
    assert {s.source for s in samples if s.uid in family} == {"ieee8023", "radiopaedia"}
    groups = link_samples(samples).group_of
    assert {groups[uid] for uid in family} == {"ieee8023:350"}
    for group_map in (groups, None):
        table = make_splits(samples, lambda s: map_label("xray3", s), seed=3, groups=group_map)
        split_of = table.split_of()
        assert len({split_of[uid] for uid in family if uid in split_of}) == 1


# --- Figure 1 ------------------------------------------------------------------------------------------


def test_figure1_counts_and_views(fig1: list[Sample]) -> None:
    assert len(fig1) == 47 and len({s.patient_id for s in fig1}) == 40
    assert _by_label(fig1) == {
        BLANK: (13, 11),
        "COVID-19": (29, 25),
        "No finding": (3, 3),
        "Pneumonia": (2, 2),
    }
    assert Counter(s.view for s in fig1) == {"AP erect": 10, "PA": 3, None: 31, "AP": 3}
    assert _label_view(fig1) == {
        f"{BLANK} / {BLANK}": 4,
        f"{BLANK} / AP": 3,
        f"{BLANK} / AP erect": 5,
        f"{BLANK} / PA": 1,
        f"COVID-19 / {BLANK}": 22,
        "COVID-19 / AP erect": 5,
        "COVID-19 / PA": 2,
        f"No finding / {BLANK}": 3,
        f"Pneumonia / {BLANK}": 2,
    }
    assert Counter(s.path.suffix for s in fig1) == {".jpg": 45, ".png": 2}
    assert all(s.path.stem == s.extra["patientid"] for s in fig1)
    blank = [s for s in fig1 if not s.extra["finding"]]
    assert len(blank) == 13 and all(_unlabelled_everywhere(s) for s in blank)
    assert Counter(map_label("xray3", s) for s in fig1) == {
        "COVID-19": 29,
        None: 13,
        "normal": 3,
        "pneumonia": 2,
    }


def test_figure1_is_read_as_cp1252(fig1: list[Sample], source_dir) -> None:
    notes = " ".join(s.extra.get("notes", "") for s in fig1)
    assert "Fever 38\u00b0 + cough" in notes and "low 90\u2019s" in notes
    with pytest.raises(ChestlensInputError, match="cannot parse CSV"):
        read_table(source_dir(figure1.FOLDER) / figure1.METADATA, figure1.REQUIRED_COLUMNS)  # UTF-8


def test_figure1_patient_letters_merge(fig1: list[Sample]) -> None:
    by_patient: dict[str, list[str]] = {}
    for s in fig1:
        by_patient.setdefault(s.patient_id, []).append(s.extra["patientid"])
    assert by_patient["figure1:COVID-00003"] == ["COVID-00003a", "COVID-00003b"]
    assert by_patient["figure1:COVID-00039"] == ["COVID-00039a", "COVID-00039b", "COVID-00039c"]
    merged = {p: ids for p, ids in by_patient.items() if len(ids) > 1}
    assert sorted(merged) == [f"figure1:COVID-000{n}" for n in ("03", "13", "15", "39", "40", "43")]
    earlier, later = (s for s in fig1 if s.patient_id == "figure1:COVID-00040")
    assert (earlier.findings, later.findings) == (("No finding",), ())
    assert figure1.patient_of("COVID-00003b") == "figure1:COVID-00003" == figure1.patient_of(" COVID-00003 ")
    age_texts = {s.extra["age_text"] for s in fig1 if "age_text" in s.extra}
    assert {"50+", "early 40s"} <= age_texts and all(s.age is None for s in fig1 if "age_text" in s.extra)


@pytest.mark.shared_data
def test_data_check_finds_the_figure1_duplicate(shared_data: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "hashes.sqlite")
    args = ["--root", str(shared_data), "--sources", "figure1", "--hash-cache", cache, "--workers", "1"]
    result = runner.invoke(app, ["data", "check", *args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n_hashed"] == 47 and report["hash_failures"] == {}
    (pair,) = report["near_duplicates"]
    assert (pair["a"], pair["b"]) == ("figure1/images/COVID-00033.jpg", "figure1/images/COVID-00037.jpg")
    assert pair["phash_distance"] <= 6
    (group,) = report["linked_groups"]
    assert group["patient_ids"] == ["figure1:COVID-00033", "figure1:COVID-00037"]


# --- source contrasts ------------------------------------------------------------------------------------


def _sample(source: str, n: int, finding: str, view: str | None = None, patient: str | None = None) -> Sample:
    pid = patient or f"{source}:{n}"
    return Sample(source, f"{source}/{n}.png", Path(f"{source}/{n}.png"), pid, (finding,), "xray", view=view)


def test_source_contrasts_on_synthetic_samples() -> None:
    samples = [
        _sample("generic-a", 0, "covid-19", "AP"),
        _sample("generic-a", 1, "covid-19", "AP", patient="generic-a:0"),
        _sample("generic-a", 2, "normal", "AP"),
        _sample("generic-a", 3, "normal", "PA"),
        _sample("generic-a", 4, "normal"),
        _sample("generic-a", 5, "unknown label", "PA"),
        _sample("generic-b", 0, "pneumonia", patient="ieee8023:7"),
        _sample("generic-c", 0, "unknown label"),
    ]
    a, b = source_contrasts(samples, "xray3")  # generic-c has no labelled image
    assert (a.source, b.source) == ("generic-a", "generic-b")
    assert a.images == {"COVID-19": 2, "pneumonia": 0, "normal": 3}
    assert a.patients == {"COVID-19": 1, "pneumonia": 0, "normal": 3}
    assert a.views == {
        "AP": {"COVID-19": 2, "pneumonia": 0, "normal": 1},
        "PA": {"COVID-19": 0, "pneumonia": 0, "normal": 1},
        "unknown": {"COVID-19": 0, "pneumonia": 0, "normal": 1},
    }
    assert (a.classes, a.within_source, a.contrast_views, a.excluded) == (
        ("COVID-19", "normal"),
        True,
        ("AP",),
        1,
    )
    assert (b.classes, b.within_source, b.views, b.patient_namespaces) == (
        ("pneumonia",),
        False,
        {},
        ("ieee8023",),
    )
    assert a.to_dict()["classes"] == ["COVID-19", "normal"] and json.dumps(b.to_dict())
    pneumonia = source_contrasts(samples, TASKS["xray2-pneumonia"])[0]
    assert pneumonia.images == {"pneumonia": 2, "normal": 3}


def test_source_contrasts_on_the_real_sources(actual, radio, fig1, source_dir) -> None:
    ieee = ieee8023.load(source_dir(ieee8023.FOLDER))
    kids = kermany.load(source_dir(kermany.FOLDER))
    found = {c.source: c for c in source_contrasts([*actual, *radio, *fig1, *ieee, *kids], "xray3")}
    assert {s: c.classes for s, c in found.items()} == {
        "actualmed": ("COVID-19", "normal"),
        "figure1": ("COVID-19", "pneumonia", "normal"),
        "ieee8023": ("COVID-19", "pneumonia", "normal"),
        "kermany": ("pneumonia", "normal"),
        "radiopaedia": ("COVID-19", "pneumonia", "normal"),
    }
    assert all(c.within_source for c in found.values())
    act = found["actualmed"]
    assert act.views == {
        "AP": {"COVID-19": 16, "pneumonia": 0, "normal": 3},
        "PA": {"COVID-19": 2, "pneumonia": 0, "normal": 11},
    }
    assert (act.contrast_views, act.excluded, act.patients["COVID-19"]) == (("AP", "PA"), 8, 17)
    assert found["radiopaedia"].patient_namespaces == ("ieee8023",) and found["radiopaedia"].excluded == 2
    assert found["radiopaedia"].contrast_views == ("AP", "AP Supine", "L", "PA")
    assert found["kermany"].views == {} and found["figure1"].excluded == 13


@pytest.mark.shared_data
def test_summary_prints_the_contrast_table(shared_data: Path) -> None:
    args = ["data", "summary", "--root", str(shared_data), "--sources", "actualmed,radiopaedia,figure1"]
    report = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    rows = {c["source"]: c for c in report["source_contrasts"]}
    assert rows["actualmed"]["classes"] == ["COVID-19", "normal"] and rows["actualmed"]["within_source"]
    assert rows["actualmed"]["views"]["PA"] == {"COVID-19": 2, "pneumonia": 0, "normal": 11}
    assert rows["radiopaedia"]["images"] == {"COVID-19": 20, "pneumonia": 36, "normal": 1}
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Same-source contrasts" in result.stdout and "within-source" in result.stdout
    assert "Classes per source x view" in result.stdout
