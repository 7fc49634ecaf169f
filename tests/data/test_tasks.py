"""Task mapping: rules on synthetic records, and class counts per source on the real data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tests.data.test_source_common import MODULES  # every built-in source adapter, once

from chestlens.data import tasks
from chestlens.data.records import Masks, Sample
from chestlens.errors import ChestlensInputError
from chestlens.preprocess.labels import IGNORE_INDEX


def _sample(source: str, *findings: str, modality: str = "xray", **extra: str) -> Sample:
    return Sample(source, f"{source}/x", Path("x"), f"{source}:1", findings, modality, extra=extra)


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (_sample("ieee8023", "COVID-19"), "COVID-19"),
        (_sample("ieee8023", "COVID-19", "ARDS"), "COVID-19"),
        (_sample("ieee8023", "Pneumonia/Viral/COVID-19"), "COVID-19"),
        (_sample("ieee8023", "Pneumocystis"), "pneumonia"),
        (_sample("generalblockchain", "Mycoplasma Bacterial Pneumonia"), "pneumonia"),
        (_sample("ieee8023", "Lipoid"), None),
        (_sample("ieee8023", "Pneumonia/Lipoid"), None),
        (_sample("v7_lungs", "ARDS"), None),
        (_sample("ieee8023", "todo"), None),
        (_sample("ieee8023", "No Finding"), "normal"),
        (_sample("hannover", "COVID-19"), "COVID-19"),
        (_sample("hannover", "COVID-19", ieee8023_finding="No Finding"), None),
        (_sample("kermany", "PNEUMONIA", "virus"), "pneumonia"),
        (_sample("kermany", "NORMAL"), "normal"),
        (_sample("kermany"), None),
        (_sample("radiopaedia", "Varicella"), "pneumonia"),
        (_sample("radiopaedia", "Lipoid"), None),
        (_sample("actualmed", "No finding"), "normal"),
        (_sample("actualmed", "COVID-19"), "COVID-19"),
        (_sample("actualmed"), None),  # blank finding: "Inconclusive", not negative
        (_sample("figure1", "Pneumonia"), "pneumonia"),
        (_sample("figure1", "No finding"), "normal"),
        (_sample("figure1"), None),  # blank finding: unlabelled
        (_sample("nih", "Effusion", "Pneumonia"), "pneumonia"),
        (_sample("nih", "No Finding"), "normal"),
        (_sample("nih", "Effusion"), None),
        (_sample("covid_ct_md", "CAP", modality="ct"), "pneumonia"),
        (_sample("covidx_ct", "Normal", modality="ct"), "normal"),
        (_sample("rsna", "Lung Opacity"), "pneumonia"),
        (_sample("rsna", "No Lung Opacity / Not Normal"), None),
    ],
)
def test_diagnosis_rules(sample, expected):
    assert tasks.diagnosis(sample) == expected


def test_task_classes_and_modality():
    covid, bacteria, normal = (
        _sample("ieee8023", "COVID-19"),
        _sample("kermany", "PNEUMONIA"),
        _sample("nih", "No Finding"),
    )
    assert [tasks.map_label("xray3", s) for s in (covid, bacteria, normal)] == [
        "COVID-19",
        "pneumonia",
        "normal",
    ]
    assert [tasks.map_label("xray2-covid", s) for s in (covid, bacteria, normal)] == [
        "COVID-19",
        "non-COVID",
        "non-COVID",
    ]
    assert [tasks.map_label("xray2-pneumonia", s) for s in (covid, bacteria, normal)] == ["pneumonia"] * 2 + [
        "normal"
    ]
    assert tasks.map_label("ct3", covid) is None
    assert tasks.map_label(tasks.TASKS["ct3"], _sample("covid_ct_md", "CAP", modality="ct")) == "CAP"
    assert tasks.TASKS["ct3"].classes == ("COVID-19", "CAP", "normal")
    with pytest.raises(ChestlensInputError, match="unknown task"):
        tasks.map_label("xray4", covid)


def test_segmentation_targets():
    assert tasks.segmentation_classes("v7_lungs", "lungs") == ("lung",)
    assert tasks.segmentation_classes("generalblockchain", "lungs") == ("lung_left", "lung_right")
    assert tasks.segmentation_classes("generalblockchain", "lesions-xray") == ("ggo", "consolidation")
    assert tasks.segmentation_classes("infnet", "lesions-ct") == ("ggo", "consolidation")
    assert tasks.segmentation_classes("infnet", "lesions-xray") == ()
    assert tasks.sources_for("pneumothorax") == ("generalblockchain", "siim")
    layers = {"lung_left": np.eye(3, dtype=bool), "lung_right": np.fliplr(np.eye(3, dtype=bool))}
    assert tasks.target_mask("lungs", Masks(layers)).sum() == 5
    assert tasks.target_mask("pneumothorax", Masks(layers)) is None


@dataclass(frozen=True)
class _Listed:
    """A mask source listing ``classes`` (never loaded by the split label)."""

    classes: tuple[str, ...]

    def load(self) -> Masks:
        raise AssertionError("split labels must not load masks")


def test_segmentation_split_labels_and_lookup():
    def masked(*classes: str, modality: str = "xray") -> Sample:
        return Sample("s", "s/x", Path("x"), "s:1", (), modality, masks=_Listed(classes))

    lungs, lesions = tasks.get_labelling("lungs"), tasks.get_labelling("lesions-xray")
    assert lungs.labels == ["lungs"] and lesions.labels == ["background", "ggo", "consolidation"]
    assert lungs.mapping(masked("lung_left", "lung_right", "ggo")) == "lungs"
    assert lesions.mapping(masked("lung_left", "ggo")) == "ggo"
    assert lesions.mapping(masked("consolidation", "ggo")) == "ggo+consolidation"
    assert lesions.mapping(masked("lung_left")) is None
    assert lesions.mapping(masked("ggo", modality="ct")) is None
    assert tasks.get_labelling("xray3") is tasks.TASKS["xray3"]
    with pytest.raises(ChestlensInputError, match=r"unknown task 'nope'.*segmentation targets: lungs"):
        tasks.get_labelling("nope")


def test_target_label_maps():
    ggo = np.zeros((3, 4), dtype=bool)
    ggo[0, :2] = True
    consolidation = np.zeros((3, 4), dtype=bool)
    consolidation[0, 1:3] = True
    ignore = np.zeros((3, 4), dtype=bool)
    ignore[2, 3] = True
    both = tasks.target_label_map("lesions-ct", Masks({"ggo": ggo, "consolidation": consolidation}, ignore))
    assert both.dtype == np.uint8 and both[0].tolist() == [1, 2, 2, 0] and both[2, 3] == IGNORE_INDEX
    only_ggo = tasks.target_label_map("lesions-xray", Masks({"ggo": ggo, "lung_left": ~ggo}))
    assert only_ggo[0].tolist() == [1, 1, 0, 0] and only_ggo.sum() == 2  # absent consolidation: empty
    lungs = tasks.target_label_map("lungs", Masks({"lung_left": ggo, "lung_right": consolidation}))
    assert lungs[0].tolist() == [1, 1, 1, 0]
    with pytest.raises(ChestlensInputError, match="no pneumothorax mask layer"):
        tasks.target_label_map("pneumothorax", Masks({"ggo": ggo}))


EXPECTED = {  # xray3 (ct3 for CT sources) class counts on the shared data
    "ieee8023": {"COVID-19": 105, "pneumonia": 65, "normal": 3},  # Lipoid 5 + ARDS 4 left out
    "hannover": {"COVID-19": 193, "pneumonia": 0, "normal": 0},  # 3 ieee8023 "No Finding" left out
    "kermany": {"COVID-19": 0, "pneumonia": 578, "normal": 328},
    "nih": {"COVID-19": 0, "pneumonia": 177, "normal": 202},
    "radiopaedia": {"COVID-19": 20, "pneumonia": 36, "normal": 1},  # Lipoid 2 left out
    "actualmed": {"COVID-19": 18, "pneumonia": 0, "normal": 14},  # 8 blank (Inconclusive) left out
    "figure1": {"COVID-19": 29, "pneumonia": 2, "normal": 3},  # 13 blank left out
    "v7_lungs": {"COVID-19": 162, "pneumonia": 0, "normal": 0},
    "generalblockchain": {"COVID-19": 18, "pneumonia": 14, "normal": 0},  # ARDS 4 left out
    "infnet": {"COVID-19": 83, "CAP": 0, "normal": 0},
    "covid_ct_md": {"COVID-19": 1, "CAP": 1, "normal": 1},  # P001, cap002, normal002
}


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.SOURCE)
def test_counts_per_source(module, source_dir):
    samples = module.load(source_dir(module.FOLDER))
    task = "ct3" if module.ADAPTER.modality == "ct" else "xray3"
    assert tasks.class_counts(task, samples) == EXPECTED[module.SOURCE]
    other = "xray3" if task == "ct3" else "ct3"
    assert sum(tasks.class_counts(other, samples).values()) == 0
