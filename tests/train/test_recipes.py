"""Recipes that make the screener read the lungs: lung-field preprocessing, source-aware training,
leave-one-source-out and patient-grouped cross-validation (``train classify --folds``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chestlens.cli import app
from chestlens.data.lung_roi import lung_roi_input, lung_roi_with_mask
from chestlens.data.records import Sample
from chestlens.data.splits import SplitMeta, SplitRow, SplitTable
from chestlens.models.factory import create_model
from chestlens.preprocess.lung_roi import MASK_FILL, classifier_frame, lung_box, paste_fraction
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.train.classify import cap_per_source, leave_sources_out
from chestlens.train.crossval import assign_folds, fold_roles
from chestlens.train.loop import SourceAdversarialNet, _ReverseGradient, source_balanced_weights

runner = CliRunner()


def _spec(**kwargs) -> PreprocessSpec:
    return PreprocessSpec(input_size=32, mean=[0.5], std=[0.5], **kwargs)


def _lungs(h: int = 40, w: int = 60) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[10:30, 15:45] = True  # rows 10-29, cols 15-44
    return mask


def test_lung_box_is_the_mask_bounding_box_widened_by_the_margin():
    top, bottom, left, right = lung_box(_lungs(), margin=0.0)
    assert (top, bottom, left, right) == pytest.approx((10 / 40, 30 / 40, 15 / 60, 45 / 60))
    wide = lung_box(_lungs(), margin=0.1)
    assert wide[0] == pytest.approx(10 / 40 - 0.1 * 20 / 40) and wide[3] == pytest.approx(
        45 / 60 + 0.1 * 30 / 60
    )
    assert lung_box(np.zeros((8, 8), dtype=bool), 0.1) is None


def test_crop_reads_only_the_lung_box_and_mask_blanks_outside_the_lungs():
    unit = torch.zeros(1, 400, 600)
    unit[:, 100:300, 150:450] = 1.0  # bright exactly where the lungs are
    unit[:, :20, :20] = 0.7  # a "marker" in the corner, outside the lungs
    plain = lung_roi_input(unit, _lungs(), _spec())
    assert plain.shape == (1, 32, 32) and float(plain[0, 0, 0]) > 0.5  # the marker is visible in full
    crop = lung_roi_input(unit, _lungs(), _spec(lung_roi="crop", lung_margin=0.0))
    assert crop.shape == (1, 32, 32) and float(crop.min()) > 0.95  # only the lung box is left
    masked, grid = lung_roi_with_mask(unit, _lungs(), _spec(lung_roi="mask", lung_margin=0.25))
    assert grid is not None and grid.shape == (32, 32)
    assert float(masked[0][~grid].max()) <= 1.0
    corners = masked[0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.all(corners == MASK_FILL)  # outside the dilated lungs: the constant fill
    assert float(masked[0][torch.from_numpy(grid)].mean()) > 0.9  # the lungs themselves are kept


def test_clahe_spreads_a_low_contrast_image():
    unit = 0.45 + 0.1 * torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0))
    equalised = lung_roi_input(unit, None, _spec(equalise="clahe"))
    assert float(equalised.std()) > 2 * float(lung_roi_input(unit, None, _spec()).std())
    assert float(equalised.min()) >= 0.0 and float(equalised.max()) <= 1.0


def test_without_lungs_the_whole_image_is_read_and_heatmaps_map_back_to_the_box():
    unit = torch.rand(1, 50, 50)
    assert torch.allclose(
        lung_roi_input(unit, None, _spec(lung_roi="crop")), lung_roi_input(unit, None, _spec())
    )
    box = classifier_frame(_lungs(), _spec(lung_roi="crop", lung_margin=0.0))
    full = paste_fraction(np.ones((8, 8)), box, (40, 60))
    assert full[_lungs()].min() == 1.0 and full[~_lungs()].max() == 0.0


def test_source_balanced_weights_equalise_classes_and_sources_within_a_class():
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    sources = ("a", "a", "a", "b", "a", "c", "c", "c", "c", "c")
    w = source_balanced_weights(targets, sources).numpy()
    cell = {}
    for weight, t, s in zip(w, targets.tolist(), sources, strict=True):
        cell[(t, s)] = cell.get((t, s), 0.0) + weight
    assert cell[(0, "a")] == pytest.approx(cell[(0, "b")]) == pytest.approx(cell[(1, "a")])
    assert cell[(0, "a")] + cell[(0, "b")] == pytest.approx(cell[(1, "a")] + cell[(1, "c")])


def test_source_head_sits_behind_a_gradient_reversal():
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 3, in_chans=1, weights=None)
    net = SourceAdversarialNet(model, n_sources=2, weight=0.5)
    x = torch.rand(2, 1, 32, 32)
    out = net.eval()(x)
    assert out.shape == (2, 5)
    assert torch.allclose(out[:, :3], model(x), atol=1e-5)  # the class logits are the classifier's own
    pooled = model.forward_head(model.forward_features(x), pre_logits=True).detach().requires_grad_(True)
    source = net.source_head(_ReverseGradient.apply(pooled, 0.5))
    source.sum().backward()
    reversed_grad = pooled.grad.clone()
    pooled.grad = None
    net.source_head(pooled).sum().backward()
    assert torch.allclose(reversed_grad, -0.5 * pooled.grad, atol=1e-6)
    kept = SourceAdversarialNet.classifier_state(net.state_dict())
    assert set(kept) == set(model.state_dict())


def _row(uid: str, source: str, group: str, split: str, label: str = "COVID-19") -> SplitRow:
    return SplitRow(uid=uid, source=source, path=uid, patient_id=group, group=group, label=label, split=split)


def test_leave_one_source_out_tests_on_that_source_alone_and_drops_shared_patients():
    rows = (
        _row("a1", "ieee8023", "g1", "train"),
        _row("a2", "ieee8023", "g2", "test"),
        _row("r1", "radiopaedia", "g1", "val"),  # same patient group as a1
        _row("r2", "radiopaedia", "g3", "train"),
        _row("n1", "nih", "g4", "test"),
    )
    table = leave_sources_out(SplitTable(rows, SplitMeta()), ["ieee8023"])
    split = {r.uid: r.split for r in table.rows}
    assert split == {"a1": "test", "a2": "test", "r2": "train", "n1": "train"}  # r1 dropped


def test_folds_keep_patient_groups_together_and_test_every_image_once():
    rows = tuple(
        _row(f"u{i}", ["a", "b"][i % 2], f"g{i // 3}", "train", ["COVID-19", "normal"][(i // 2) % 2])
        for i in range(60)
    )
    table = SplitTable(rows, SplitMeta())
    folds = assign_folds(table, 4, seed=0)
    assert set(folds.values()) == {0, 1, 2, 3}
    groups = [r.group for r in rows]
    fold_of_image = np.asarray([folds[g] for g in groups])
    tested = np.concatenate([fold_roles(fold_of_image, groups, k)["test"] for k in range(4)])
    assert sorted(tested.tolist()) == list(range(60))
    for k in range(4):
        roles = fold_roles(fold_of_image, groups, k)
        train_groups = {groups[i] for i in roles["train"]}
        assert train_groups.isdisjoint({groups[i] for i in roles["test"]})
        assert train_groups.isdisjoint({groups[i] for i in roles["val"]})


def test_cap_per_source_keeps_whole_patients():
    samples = [
        Sample(
            source=s,
            uid=f"{s}{i}",
            path=Path(f"{s}{i}.png"),
            patient_id=f"{s}:p{i // 2}",
            findings=(),
            modality="xray",
        )
        for s in ("a", "b")
        for i in range(40 if s == "a" else 6)
    ]
    kept = cap_per_source(samples, 10, seed=0)
    per_source = {s: [k for k in kept if k.source == s] for s in ("a", "b")}
    assert 10 <= len(per_source["a"]) <= 11 and len(per_source["b"]) == 6
    patients = {k.patient_id for k in per_source["a"]}
    assert all(sum(k.patient_id == p for k in per_source["a"]) == 2 for p in patients)


def _tiny_run(shared_data: Path, tmp_path: Path, out: str) -> list[str]:
    """``--set`` values of a seconds-long run on a small real split (hannover, kermany, nih)."""
    from tests.train.test_classify_cli import _small_split

    splits = _small_split(shared_data, tmp_path / "splits.csv")
    return [
        "input_size=32",
        "epochs=1",
        "batch_size=8",
        "max_steps_per_epoch=1",
        "graph=false",
        f"splits={splits}",
        f"data_root={shared_data}",
        f"out={tmp_path / out}",
        "weights=null",
    ]


@pytest.mark.slow
def test_cross_validation_cli_writes_out_of_fold_within_source_report(shared_data: Path, tmp_path: Path):
    settings = _tiny_run(shared_data, tmp_path, "cv")
    settings += ["lung_roi=mask", "source_adversary=0.3", "balance=source_balanced"]
    args = ["train", "classify", "-q", "--folds", "2", *[a for s in settings for a in ("--set", s)]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Within-source AUC (out-of-fold)" in result.output and "Research use only" in result.output
    report = json.loads((tmp_path / "cv" / "cv-report.json").read_text())
    assert set(report["views"]) == {"full image", "lungs masked out", "lungs only"}
    questions = {row["question"] for row in report["views"]["full image"]["within_source"]}
    assert {"COVID-19 vs rest", "pneumonia vs normal"} <= questions
    assert len(report["per_fold"]) == 2 and not (tmp_path / "cv" / "bundle").exists()
    oof = (tmp_path / "cv" / "oof-predictions.csv").read_text().splitlines()
    assert len(oof) - 1 == report["n_images"]


@pytest.mark.slow
def test_leave_one_source_out_cli_tests_on_the_left_out_source_only(shared_data: Path, tmp_path: Path):

    settings = [*_tiny_run(shared_data, tmp_path, "loso"), "fp16_bundle=false"]
    args = ["train", "classify", "-q", "--leave-out", "nih", *[a for s in settings for a in ("--set", s)]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    spec = json.loads((tmp_path / "loso" / "bundle" / "bundle.json").read_text())
    assert spec["training"]["config"]["leave_out"] == ["nih"]
    test_sources = {row["stratum"] for q in spec["metrics"]["test"]["within_source"] for row in q["strata"]}
    assert test_sources == {"nih"}
    report = json.loads((tmp_path / "loso" / "test-report" / "report.json").read_text())
    assert set(report["metrics"]["per_source"]) == {"nih"}


def test_the_recipe_with_the_best_out_of_fold_within_source_auc_is_chosen(tmp_path: Path):
    from chestlens.evaluate.tables import recipe_markdown
    from chestlens.train.crossval import read_recipe_grid

    def row(name: str, covid: float, pneumonia: float | None) -> dict:
        within = {"COVID-19 vs rest": {"value": covid, "low": covid - 0.1, "high": covid + 0.1}}
        if pneumonia is not None:
            within["pneumonia vs normal"] = {"value": pneumonia, "low": None, "high": None}
        return {
            "recipe": name,
            "within_source": within,
            "fold_score": {"mean": 0.7, "sd": 0.05},
            "pooled_macro_auc": 0.9,
            "masked_out_macro_auc": 0.6,
            "cam_in_lungs": 0.7,
            "source_probe_excess": 0.2,
        }

    rows = [row("baseline", 0.62, 0.88), row("mask", 0.70, 0.86), row("crop", 0.75, None)]
    grid = {"folds": 3, "settings": "input_size=112", "reproduce": "python bench/x.py", "rows": rows}
    (tmp_path / "recipes.json").write_text(json.dumps(grid))
    assert read_recipe_grid(tmp_path / "recipes.json")["chosen"] == "mask"  # (0.70 + 0.86) / 2 is best
    table = "\n".join(recipe_markdown(rows))
    assert (
        "| mask | 0.700 [0.600, 0.800] | 0.860 |" in table
        and "| crop | 0.750 [0.650, 0.850] | n/a |" in table
    )


@pytest.mark.slow
def test_evaluate_and_screen_a_lung_field_classifier_through_the_same_preprocessing(
    tiny_classifier_bundle, shared_data: Path, tmp_path: Path
):
    from chestlens.data.transforms import normalise
    from chestlens.evaluate.calibration import apply_temperature
    from chestlens.io import read_image
    from chestlens.io.samples import sample_path
    from chestlens.models.bundle import load_bundle
    from chestlens.pipeline.screener import Screener
    from chestlens.preprocess.resize import working_image
    from chestlens.preprocess.units import to_unit_range

    preprocess = PreprocessSpec(input_size=64, mean=[0.5], std=[0.5], lung_roi="mask", lung_margin=0.08)
    folder = tiny_classifier_bundle(preprocess=preprocess)
    data = shared_data / "actualmed-covid-chestxray-dataset"
    result = runner.invoke(
        app, ["evaluate", str(folder), "--data", str(data), "--n-boot", "20", "-o", str(tmp_path)]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "actualmed / PA" in result.output  # within-source AUC, split by view

    # the tiny bundle has no ONNX graph: the torch runtime runs the same graph module
    screener = Screener(classifier=str(folder), lesions=[], runtime="torch", device="cpu")
    path = sample_path("RG1_UNCR.dcm")
    screening = screener.screen(path)
    bundle = load_bundle(folder)
    whole = to_unit_range(read_image(path), screener.lungs.spec.preprocess)
    unit = torch.from_numpy(working_image(whole, screener.working_side))[None]
    mask = screening.lung_mask
    x = lung_roi_input(unit, mask, preprocess)
    with torch.no_grad():
        logits = bundle.build_model()(normalise(x, preprocess)[None]).numpy()
    expected = apply_temperature(logits, bundle.spec.temperature)[0]
    got = [screening.result.classification.probabilities[label] for label in bundle.spec.labels]
    assert np.allclose(got, expected, atol=1e-5)
    assert screening.result.explanation.energy_in_lungs is not None
