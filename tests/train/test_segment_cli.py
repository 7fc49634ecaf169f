"""``chestlens train segment`` and ``chestlens evaluate`` on segmenter bundles, end to end (tiny settings):
real V7 lung masks (with the ignore label), resume, and a SIIM-format folder with RLE masks."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.uid import ComputedRadiographyImageStorage, generate_uid
from typer.testing import CliRunner

from chestlens.cli import app
from chestlens.data.registry import load_samples
from chestlens.data.rle import encode_rle
from chestlens.data.sources import v7_lungs
from chestlens.data.splits import make_splits, save_splits
from chestlens.data.tasks import get_segmentation_target
from chestlens.train.checkpoint import load_checkpoint_state

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
LUNGS = get_segmentation_target("lungs")
TINY = ["input_size=32", "epochs=1", "batch_size=2", "max_steps_per_epoch=2", "graph=false"]


def _train(settings: list[str], *extra: str):
    args = ["train", "segment", "-q", *extra, *[a for s in settings for a in ("--set", s)]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Research use only" in result.output
    return result


def _v7_samples(root: Path, n: int) -> list:
    """The first ``n`` V7 samples (by uid) of distinct patients."""
    picked, patients = [], set()
    for sample in sorted(load_samples(root, ["v7_lungs"]), key=lambda s: s.uid):
        if LUNGS.mapping(sample) and sample.patient_id not in patients:
            patients.add(sample.patient_id)
            picked.append(sample)
    return picked[:n]


@pytest.fixture(scope="module")
def lungs(shared_data: Path, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    work = tmp_path_factory.mktemp("segment")
    table = make_splits(
        _v7_samples(shared_data, 8), LUNGS.mapping, (0.5, 0.25, 0.25), seed=0, task="lungs", root=shared_data
    )
    save_splits(table, work / "splits.csv")
    settings = [
        *TINY,
        f"splits={work / 'splits.csv'}",
        f"data_root={shared_data}",
        "sources=[v7_lungs]",
        f"out={work / 'run'}",
    ]
    _train(settings)
    return work / "run" / "bundle", work / "splits.csv", settings


def test_training_writes_a_segmenter_bundle_reports_and_card(lungs):
    bundle, _, _ = lungs
    spec = json.loads((bundle / "bundle.json").read_text())
    assert spec["kind"] == "segmenter" and spec["labels"] == ["lungs"]
    assert spec["architecture_kwargs"] == {"encoder": "efficientnet_lite0", "mode": "binary"}
    assert spec["training"]["config"]["loss"] == "bce_dice"  # resolved from the binary target
    assert spec["metrics"]["test"]["n_images"] == 2
    history = spec["training"]["history"]
    assert np.isfinite(history[0]["train_loss"]) and 0 <= history[0]["val_mean_dice"] <= 1
    run = bundle.parent
    for name in ("report.json", "report.html", "dice_histogram.png", "worst_cases.png"):
        assert (run / "test-report" / name).is_file(), name
    assert (run / "training_curve.png").is_file() and (run / "tensorboard").is_dir()
    report = json.loads((run / "test-report" / "report.json").read_text())
    assert report["metrics"]["per_class"][0]["cases"]["true_positive"] == 2
    assert [image["source"] for image in report["per_image"]] == ["v7_lungs", "v7_lungs"]
    html = (run / "test-report" / "report.html").read_text()
    assert "Research use only" in html and "TN / FP / FN / TP" in html and "https://" not in html
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "Research use only" in card and "chestlens train segment" in card and "| lungs | 2 |" in card


def test_evaluate_on_the_saved_split_reproduces_training_test_numbers(lungs, shared_data, tmp_path):
    bundle, splits, _ = lungs
    args = ["evaluate", str(bundle), "--splits", str(splits), "--root", str(shared_data)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "eval"), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    summary = json.loads(result.stdout)["summary"]
    stored = json.loads((bundle / "bundle.json").read_text())["metrics"]["test"]
    assert summary["n_images"] == stored["n_images"]
    for name in ("dice", "iou", "dice_all_images"):
        assert summary["per_class"]["lungs"][name] == pytest.approx(
            stored["per_class"]["lungs"][name], abs=2e-3
        )
    assert (tmp_path / "eval" / "worst_cases.png").is_file()


def _v7_copy(root: Path, samples: list, out: Path) -> Path:
    """A V7-layout folder holding only ``samples``: their masks, annotation JSONs and images."""
    source = root / v7_lungs.FOLDER
    (out / v7_lungs.MASKS).mkdir(parents=True)
    (out / v7_lungs.METADATA.parent / "images").mkdir(parents=True)
    shutil.copy(source / v7_lungs.METADATA, out / v7_lungs.METADATA)
    with zipfile.ZipFile(source / v7_lungs.ANNOTATIONS / "covid-only.zip") as archive:
        jsons = {Path(name).stem: name for name in archive.namelist() if name.endswith(".json")}
        for sample in samples:
            v7_id = sample.extra["v7_image_id"]
            (out / v7_lungs.ANNOTATIONS / f"{v7_id}.json").write_bytes(archive.read(jsons[v7_id]))
            shutil.copy(source / sample.extra["mask"], out / sample.extra["mask"])
            shutil.copy(sample.path, out / v7_lungs.METADATA.parent / "images" / Path(sample.path).name)
    return out


def test_evaluate_any_folder_in_a_supported_layout(lungs, shared_data, tmp_path):
    bundle, _, _ = lungs
    data = _v7_copy(shared_data, _v7_samples(shared_data, 12)[8:], tmp_path / "hospital")
    result = runner.invoke(app, ["evaluate", str(bundle), "--data", str(data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "4 images" in result.output and "lungs: Dice" in result.output


def test_resume_continues_from_the_checkpoint(lungs, tmp_path):
    bundle, _, settings = lungs
    run = tmp_path / "run"
    shutil.copytree(bundle.parent, run)
    first = load_checkpoint_state(run)["history"]
    _train([*settings, f"out={run}", "epochs=2"], "--resume")
    state = load_checkpoint_state(run)
    assert state["epoch"] == 2 and state["history"][0] == first[0]
    assert len(json.loads((run / "bundle" / "bundle.json").read_text())["training"]["history"]) == 2


def _radiograph(path: Path, pixels: np.ndarray, patient_id: str) -> None:
    """An 8-bit MONOCHROME2 computed-radiography DICOM file with ``pixels`` ``(rows, cols)``."""
    ds = Dataset()
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.PatientID = patient_id
    ds.set_pixel_data(pixels, "MONOCHROME2", 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _siim_folder(root: Path) -> Path:
    """Eight 64 x 64 radiographs in the SIIM layout: five with pneumothorax masks drawn here (one with two
    instances) and written as SIIM RLE strings in ``train-rle.csv``, three without (``-1``). Pixels are
    noise (distinct per image, so no two are near-duplicates), dark inside the pneumothorax."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        image_id = f"1.2.276.0.7230010.3.1.4.{i}"
        instances = []
        if i < 5:
            instances.append(np.zeros((64, 64), dtype=bool))
            instances[-1][8 + i : 30, 40:56] = True
        if i == 0:
            instances.append(np.zeros((64, 64), dtype=bool))
            instances[-1][40:52, 6:20] = True
        pixels = rng.integers(80, 200, (64, 64), dtype=np.uint8)
        for mask in instances:
            pixels[mask] = 10
        dicom = root / "dicom-images-train" / f"study{i}" / f"series{i}" / f"{image_id}.dcm"
        _radiograph(dicom, pixels, f"patient-{i}")
        rows += [(image_id, encode_rle(mask)) for mask in instances] or [(image_id, "-1")]
    with (root / "train-rle.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", " EncodedPixels"])
        writer.writerows((image_id, f" {rle}") for image_id, rle in rows)
    return root


def test_pneumothorax_from_siim_rle_trains_and_evaluates(tmp_path, monkeypatch):
    monkeypatch.setenv("CHESTLENS_HASH_CACHE", str(tmp_path / "hashes.sqlite"))
    data = _siim_folder(tmp_path / "siim")
    run = tmp_path / "run"
    settings = [*TINY, "target=pneumothorax", "encoder_weights=null", f"data_root={data}", f"out={run}"]
    _train(settings)
    spec = json.loads((run / "bundle" / "bundle.json").read_text())
    assert spec["task"] == "pneumothorax" and spec["labels"] == ["pneumothorax"]
    assert np.isfinite(spec["training"]["history"][0]["train_loss"])
    split = (run / "splits.csv").read_text()
    assert split.count("siim/dicom-images-train/") == 8  # the split machinery made a patient-level split
    result = runner.invoke(app, ["evaluate", str(run / "bundle"), "--data", str(data), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    cases = json.loads(result.stdout)["summary"]["per_class"]["pneumothorax"]["cases"]
    assert cases["true_negative"] + cases["false_positive"] == 3  # the three -1 images have empty masks


def test_segment_folds_tests_every_image_once_out_of_fold(lungs, tmp_path):
    """``train segment --folds 2``: each image of the 8 patients is tested once by the fold model that
    never saw its patient; per-class CV figures with patient-bootstrap CIs; no bundle."""
    _, _, settings = lungs
    settings = [*[s for s in settings if not s.startswith("out=")], f"out={tmp_path / 'cv'}"]
    result = _train(settings, "--folds", "2")

    report = json.loads((tmp_path / "cv" / "seg-cv-report.json").read_text())
    assert (report["folds"], report["n_images"], report["n_patients"]) == (2, 8, 8)
    lungs_row = report["classes"]["lungs"]
    assert 0 <= lungs_row["oof_mean_dice"]["value"] <= 1
    assert (
        lungs_row["oof_mean_dice"]["low"]
        <= lungs_row["oof_mean_dice"]["value"]
        <= lungs_row["oof_mean_dice"]["high"]
    )
    assert sum(fold["n_test"] for fold in report["per_fold"]) == 8
    rows = list(csv.DictReader((tmp_path / "cv" / "oof-dice.csv").open()))
    assert len({row["uid"] for row in rows}) == 8 and {row["fold"] for row in rows} == {"0", "1"}
    for fold in ("0", "1"):  # a fold's patients are never in the other fold
        assert not {r["patient_id"] for r in rows if r["fold"] == fold} & {
            r["patient_id"] for r in rows if r["fold"] != fold
        }
    assert "out-of-fold mean Dice" in result.output and not (tmp_path / "cv" / "bundle").exists()
    # the same images scored at their masks' native size (V7 masks are larger than the 32 px grid)
    native = lungs_row["native"]["oof_mean_dice"]
    assert 0 <= native["low"] <= native["value"] <= native["high"] <= 1
    assert native["value"] == pytest.approx(np.mean([float(r["native_dice_lungs"]) for r in rows]), abs=1e-3)
    assert "native resolution" in result.output


def test_segment_folds_resume_rescores_finished_folds_without_training(lungs, tmp_path):
    """``--folds 2 --resume`` on a finished CV: every fold's checkpoint is left as it is (no epoch runs)
    and the report is the same."""
    _, _, settings = lungs
    settings = [*[s for s in settings if not s.startswith("out=")], f"out={tmp_path / 'cv'}"]
    _train(settings, "--folds", "2")
    first = json.loads((tmp_path / "cv" / "seg-cv-report.json").read_text())
    checkpoints = sorted((tmp_path / "cv").glob("fold-*/checkpoint.pt"))
    assert len(checkpoints) == 2
    stamps = [c.stat().st_mtime_ns for c in checkpoints]

    _train(settings, "--folds", "2", "--resume")
    again = json.loads((tmp_path / "cv" / "seg-cv-report.json").read_text())
    assert [c.stat().st_mtime_ns for c in checkpoints] == stamps
    assert again["classes"] == first["classes"] and again["per_fold"] == first["per_fold"]

    # the same fold models re-scored with test-time flips: their out-of-fold effect, no training
    _train([*settings, "tta=[hflip,vflip]"], "--folds", "2", "--resume")
    flipped = json.loads((tmp_path / "cv" / "seg-cv-report.json").read_text())
    assert [c.stat().st_mtime_ns for c in checkpoints] == stamps
    assert flipped["recipe"]["tta"] == ["hflip", "vflip"]
    assert [f["best_epoch"] for f in flipped["per_fold"]] == [f["best_epoch"] for f in first["per_fold"]]
    assert flipped["classes"]["lungs"]["oof_mean_dice"] != first["classes"]["lungs"]["oof_mean_dice"]


def test_resume_with_folds_is_refused_for_other_trainers(capsys):
    from chestlens.cli import EXIT_BAD_INPUT, main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "detect", "--folds", "2", "--resume"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume with --folds is not supported by train detect" in err[0]


def test_fit_all_trains_on_every_image_keeps_the_last_epoch_and_its_card_leads_with_the_cv(
    lungs, tmp_path, capsys
):
    """``fit_all=true``: the final fit of a cross-validated recipe on all 8 images for exactly ``epochs``
    epochs; no validation or test figures; once the recipe's CV is attached, the card shows it and says
    that nothing was held out. ``--folds`` with ``fit_all`` is refused in one line."""
    from chestlens.models.spec import read_spec
    from chestlens.train.seg_crossval import attach_cross_validation, card_cross_validation

    _, _, settings = lungs
    base = [s for s in settings if not s.startswith(("out=", "epochs="))]
    _train([*base, "epochs=2", "fit_all=true", f"out={tmp_path / 'fit'}"])
    bundle = tmp_path / "fit" / "bundle"
    spec = read_spec(bundle)
    assert spec.training.split["fit_all"] is True and spec.training.split["n_images"] == 8
    assert spec.training.best_epoch == 2 and len(spec.training.history) == 2
    assert not any("val_loss" in epoch for epoch in spec.training.history)
    assert "validation" not in spec.metrics and "test" not in spec.metrics
    assert not (bundle / "MODEL_CARD.md").exists()  # written once the CV is attached

    _train([*base, f"out={tmp_path / 'cv'}"], "--folds", "2")
    report = json.loads((tmp_path / "cv" / "seg-cv-report.json").read_text())
    section = card_cross_validation(report, reproduce="train segment --folds 2", epochs_note="1 epoch")
    card = attach_cross_validation(bundle, section, None).read_text()
    assert "## Cross-validation of this recipe (read this first)" in card
    assert "## No test split" in card and "trained on all 8 images" in card and "Test results" not in card
    assert read_spec(bundle).metrics["cross_validation"]["folds"] == 2

    from chestlens.cli import EXIT_BAD_INPUT, main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "segment", "--folds", "2", "--set", "fit_all=true", *[f"--set={s}" for s in base]])
    assert exit_info.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "drop fit_all for --folds" in err[0]


def test_folds_ensemble_bundles_the_fold_models_as_one_segmenter(lungs, tmp_path, capsys):
    """``--folds 2 --ensemble``: OUT/bundle holds both fold models (each fold's best weights), whose
    logits it averages, in one ONNX graph; its card leads with the CV and says that the ensemble has no
    out-of-fold figure of its own. A member taken out gives that fold model's logits. ``--ensemble``
    without ``--folds`` is refused in one line."""
    import torch

    from chestlens.cli import EXIT_BAD_INPUT, main
    from chestlens.models.bundle import load_bundle
    from chestlens.train.seg_ensemble import member_bundle

    _, _, settings = lungs
    base = [s for s in settings if not s.startswith(("out=", "graph="))]
    result = _train([*base, "graph=true", f"out={tmp_path / 'cv'}"], "--folds", "2", "--ensemble")
    bundle = tmp_path / "cv" / "bundle"
    assert f"bundle: {bundle}" in result.output
    loaded = load_bundle(bundle)
    spec = loaded.spec
    assert spec.architecture_kwargs["members"] == 2 and spec.graph is not None
    assert spec.training.split["fold_ensemble"] == 2 and spec.training.split["n_images"] == 8
    assert {key.split(".")[1] for key in loaded.state_dict} == {"0", "1"}

    x = torch.rand(3, 1, 32, 32)
    ensemble = loaded.build_model().eval()
    folds = []
    for k in range(2):
        member = load_bundle(member_bundle(bundle, k, tmp_path / f"member-{k}"))
        assert "members" not in member.spec.architecture_kwargs and member.spec.graph is None
        fold = member.build_model().eval()
        folds.append(fold)
        saved = load_checkpoint_state(tmp_path / "cv" / f"fold-{k}")["best_state"]
        for key, value in fold.state_dict().items():  # the member is that fold's best epoch (fp16 storage)
            torch.testing.assert_close(value.float(), saved[key].float(), atol=1e-2, rtol=1e-2)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), (folds[0](x) + folds[1](x)) / 2, atol=1e-5, rtol=1e-5)

    card = (bundle / "MODEL_CARD.md").read_text()
    assert "## Cross-validation of this recipe (read this first)" in card
    assert "Fold ensemble of 2 models of this recipe" in card and "Test results" not in card
    assert "the fold ensemble of its recipe's 2-fold cross-validation" in card
    assert "no out-of-fold figure of its own" in card

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "segment", "--ensemble", *[f"--set={s}" for s in base]])
    assert exit_info.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ensemble needs --folds K" in err[0]
