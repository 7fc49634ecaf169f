"""``chestlens train classify`` and ``chestlens evaluate`` end to end on real images (tiny settings)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chestlens.cli import app
from chestlens.data.registry import load_samples
from chestlens.data.splits import SplitTable, make_splits, save_splits
from chestlens.data.tasks import get_task

runner = CliRunner()
PER_CLASS_SOURCE = 8  # images per (source, class): small enough for CI, enough for every split


def _small_split(root: Path, out: Path) -> Path:
    task = get_task("xray3")
    samples = load_samples(root, ["hannover", "kermany", "nih"])
    picked, seen = [], {}
    for sample in sorted(samples, key=lambda s: s.uid):
        key = (sample.source, task.mapping(sample))
        if key[1] is not None and seen.get(key, 0) < PER_CLASS_SOURCE:
            seen[key] = seen.get(key, 0) + 1
            picked.append(sample)
    table: SplitTable = make_splits(picked, task.mapping, (0.5, 0.25, 0.25), seed=0, task="xray3", root=root)
    save_splits(table, out)
    return out


@pytest.fixture(scope="module")
def trained(shared_data: Path, tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("classify")
    splits = _small_split(shared_data, work / "splits.csv")
    settings = [
        "input_size=32",
        "epochs=1",
        "batch_size=8",
        "max_steps_per_epoch=2",
        f"splits={splits}",
        f"data_root={shared_data}",
        f"out={work / 'run'}",
        "weights=null",
    ]
    result = runner.invoke(app, ["train", "classify", "-q", *[a for s in settings for a in ("--set", s)]])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Research use only" in result.output
    return work / "run" / "bundle", splits


def test_training_writes_a_verified_graph_that_onnx_runtime_screens_with(trained, pip_dicom):
    from chestlens.pipeline.screener import Screener

    bundle, _ = trained
    spec = json.loads((bundle / "bundle.json").read_text())
    assert (bundle / "model.onnx").is_file()
    assert spec["graph"]["max_abs_diff_probabilities"] <= spec["graph"]["tolerance"]
    result = Screener(classifier=str(bundle), lesions=[]).screen(pip_dicom("RG1_UNCR.dcm")).result
    assert result.runtime == "onnx" and list(result.classification.probabilities) == spec["labels"]


def test_training_writes_bundle_reports_and_card(trained):
    bundle, _ = trained
    spec = json.loads((bundle / "bundle.json").read_text())
    assert spec["labels"] == ["COVID-19", "pneumonia", "normal"]
    assert spec["operating_points"][0]["label"] == "COVID-19"
    assert spec["training"]["config"]["input_size"] == 32  # the resolved config is in the bundle
    assert spec["metrics"]["test"]["n_images"] > 0
    run = bundle.parent
    for name in (
        "test-report/report.html",
        "test-report/roc.png",
        "validation-report/report.json",
        "training_curve.png",
        "checkpoint.pt",
    ):
        assert (run / name).is_file(), name
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "Research use only" in card and "## Targets (test split)" in card
    assert "chestlens train classify" in card


def test_evaluate_on_the_saved_split_reproduces_training_test_numbers(trained, shared_data, tmp_path):
    bundle, splits = trained
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(bundle),
            "--splits",
            str(splits),
            "--split",
            "test",
            "--root",
            str(shared_data),
            "--out",
            str(tmp_path / "eval"),
            "--json",
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    summary = json.loads(result.stdout)["summary"]
    stored = json.loads((bundle / "bundle.json").read_text())["metrics"]["test"]
    assert summary["macro_auc"] == pytest.approx(stored["macro_auc"], abs=2e-3)  # fp16 weights if stored so
    assert summary["n_images"] == stored["n_images"]
    html = (tmp_path / "eval" / "report.html").read_text()
    assert "Research use only" in html and "http://" not in html and "https://" not in html


def test_evaluate_any_folder_in_a_supported_layout(trained, shared_data, tmp_path):
    bundle, _ = trained
    kermany = shared_data / "kermany-chest-xray" / "chest_xray" / "train"
    data = tmp_path / "hospital"
    for label, folder in (("normal", "NORMAL"), ("pneumonia", "PNEUMONIA")):
        (data / label).mkdir(parents=True)
        for image in sorted((kermany / folder).iterdir())[:6]:
            shutil.copy(image, data / label / image.name)
    result = runner.invoke(app, ["evaluate", str(bundle), "--data", str(data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "12 images" in result.output


def test_evaluate_needs_exactly_one_data_source(trained):
    bundle, _ = trained
    result = runner.invoke(app, ["evaluate", str(bundle)])
    assert result.exit_code != 0


def test_select_on_validation_ships_the_best_candidate_with_its_card(trained, tmp_path):
    bundle, _ = trained
    out = tmp_path / "shipped"
    result = runner.invoke(app, ["train", "select", str(bundle), "--out", str(out), "--reproduce", "cmd"])
    assert result.exit_code == 0, (result.output, result.exception)
    spec = json.loads((out / "bundle.json").read_text())
    assert spec["training"]["selection"]["metric"] == "validation within_source_score"  # the default
    assert (
        spec["training"]["selection"]["candidates"][0]["validation"]
        == spec["metrics"]["validation"]["within_source_score"]
    )
    assert "## Model selection" in (out / "MODEL_CARD.md").read_text()
    assert (out / "weights.safetensors").read_bytes() == (bundle / "weights.safetensors").read_bytes()


def test_select_reports_other_recipes_side_by_side(trained, tmp_path):
    bundle, _ = trained
    out = tmp_path / "shipped"
    args = ["train", "select", str(bundle), "--out", str(out), "--compare", str(bundle)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    (row,) = json.loads((out / "bundle.json").read_text())["training"]["comparison"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Seed recipes, same data, split and pipeline" in card
    assert row["macro AUC"] in card and row["architecture"] == "efficientnet_lite0"
