"""``train detect --folds K`` and the segmenter CV's lesion-instance AP on the same folds (Inf-Net)."""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from chestlens.cli import EXIT_BAD_INPUT, app, main
from chestlens.data.registry import load_samples
from chestlens.data.splits import make_splits, save_splits
from chestlens.data.tasks import get_segmentation_target
from chestlens.errors import ChestlensInputError
from chestlens.train.crossval import VAL_BUCKETS, fold_fingerprint
from chestlens.train.det_crossval import check_cv_backbone
from chestlens.train.detect import DetectConfig
from chestlens.train.seg_crossval import class_probabilities, component_instances

runner = CliRunner()
LESIONS = get_segmentation_target("lesions-ct")
#: Tiny runs: 64 px, one epoch of two steps per fold.
TINY = ["input_size=64", "epochs=1", "batch_size=2", "max_steps_per_epoch=2"]
#: A Mask R-CNN that trains and evaluates in seconds on a CPU.
TINY_DETECTOR = [
    "arch=maskrcnn_resnet18_fpn",
    "backbone_weights=null",
    "box_batch_size_per_image=32",
    "rpn_post_nms_top_n_train=100",
    "detections_per_image=10",
]


def _infnet_slices(root: Path) -> list:
    """Ten Inf-Net lesion slices (one patient group each): four whose group falls in the validation
    bucket (:func:`chestlens.train.crossval.fold_roles`), so that both folds have validation images."""
    samples = sorted((s for s in load_samples(root, ["infnet"]) if LESIONS.mapping(s)), key=lambda s: s.uid)
    in_val = [s for s in samples if zlib.crc32(s.patient_id.encode()) % VAL_BUCKETS == 0]
    others = [s for s in samples if zlib.crc32(s.patient_id.encode()) % VAL_BUCKETS != 0]
    return in_val[:4] + others[:6]


def _run(command: str, settings: list[str], *extra: str):
    args = ["train", command, "-q", *extra, *[a for s in settings for a in ("--set", s)]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Research use only" in result.output
    return result


@pytest.fixture(scope="module")
def both_cvs(shared_data: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    """``train segment --folds 2`` then ``train detect --folds 2`` with the same data and split settings;
    returns the work folder (``seg/``, ``det/``) and the shared settings."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("lesion-cv")
    table = make_splits(
        _infnet_slices(shared_data),
        LESIONS.mapping,
        (0.5, 0.25, 0.25),
        seed=0,
        task="lesions-ct",
        root=shared_data,
    )
    save_splits(table, work / "splits.csv")
    shared = [
        *TINY,
        "target=lesions-ct",
        "sources=[infnet]",
        f"splits={work / 'splits.csv'}",
        f"data_root={shared_data}",
    ]
    try:
        seg = _run("segment", [*shared, "encoder_weights=null", f"out={work / 'seg'}"], "--folds", "2")
        det = _run("detect", [*shared, *TINY_DETECTOR, f"out={work / 'det'}"], "--folds", "2")
    finally:
        torch.set_num_threads(threads)
    assert "Lesion instances (semantic segmenter" in seg.output
    assert "Lesion instances (Mask R-CNN detector)" in det.output
    return work, shared


@pytest.mark.slow  # two tiny U-Nets and two tiny Mask R-CNNs trained and scored: about 13 s on 2 cores
@pytest.mark.shared_data
def test_detect_folds_test_every_image_once_on_the_segmenter_folds(both_cvs):
    work, _ = both_cvs
    det = json.loads((work / "det" / "det-cv-report.json").read_text())
    seg = json.loads((work / "seg" / "seg-cv-report.json").read_text())
    assert (det["folds"], det["n_images"], det["n_patients"]) == (2, 10, 10)
    assert sum(fold["n_test"] for fold in det["per_fold"]) == 10  # every image tested once
    assert all(fold["n_val"] > 0 and fold["n_train"] > 0 for fold in det["per_fold"])
    # the same folds as the segmenter CV: same fingerprint, and it is the segmenter's per-image folds
    assert det["fold_assignment"] == {**seg["fold_assignment"]}
    rows = list(csv.DictReader((work / "seg" / "oof-dice.csv").open()))
    folds = np.asarray([int(row["fold"]) for row in rows])
    assert fold_fingerprint([row["uid"] for row in rows], folds) == det["fold_assignment"]["fingerprint"]
    assert [f["n_test"] for f in det["per_fold"]] == [f["n_test"] for f in seg["per_fold"]]

    pooled = det["instances"]["pooled"]
    assert pooled["n_images"] == 10 and set(pooled["per_class"]) == {"ggo", "consolidation"}
    assert pooled["per_class"]["ggo"]["n_gt"] > 0
    for iou in ("segm", "bbox"):
        for key in ("ap50", "ap75", "map"):
            e = pooled[iou][key]
            assert e["value"] is not None and e["low"] <= e["value"] <= e["high"], (iou, key, e)
    assert det["instances"]["score"] == "the Mask R-CNN detection score"
    assert len(det["instances"]["fold_mask_ap50"]["per_fold"]) == 2
    markdown = (work / "det" / "det-cv-report.md").read_text()
    assert "mask AP@0.5 [95% CI]" in markdown and det["fold_assignment"]["fingerprint"] in markdown
    assert not (work / "det" / "bundle").exists()


@pytest.mark.slow  # shares the runs of the test above
@pytest.mark.shared_data
def test_segmenter_cv_report_has_instance_ap_rows_side_by_side(both_cvs):
    work, _ = both_cvs
    seg = json.loads((work / "seg" / "seg-cv-report.json").read_text())
    det = json.loads((work / "det" / "det-cv-report.json").read_text())
    instances = seg["instances"]
    assert instances["min_area_px"] == det["instances"]["min_area_px"] == 10
    assert "mean predicted probability" in instances["score"]
    # the same true instances in both reports: same images, folds and instance rule
    for label in ("ggo", "consolidation"):
        assert (
            instances["pooled"]["per_class"][label]["n_gt"]
            == det["instances"]["pooled"]["per_class"][label]["n_gt"]
        )
    ap50 = instances["pooled"]["segm"]["ap50"]
    assert ap50["low"] <= ap50["value"] <= ap50["high"]
    assert [f["test_mask_ap50"] for f in seg["per_fold"]] == instances["fold_mask_ap50"]["per_fold"]
    markdown = (work / "seg" / "seg-cv-report.md").read_text()
    assert "out-of-fold mean Dice" in markdown and "| all classes (mean AP) |" in markdown
    assert seg["fold_assignment"]["fingerprint"] in markdown and "train detect --folds 2" in markdown


@pytest.mark.slow  # shares the runs of the tests above
@pytest.mark.shared_data
def test_segmenter_cv_scores_any_lesion_on_the_grid_and_at_native_size(both_cvs):
    """Two lesion classes: an ``any_lesion`` row (every class merged), and every row also at the masks'
    native size; the report's means are the means of ``oof-dice.csv``'s columns."""
    work, _ = both_cvs
    seg = json.loads((work / "seg" / "seg-cv-report.json").read_text())
    assert list(seg["classes"]) == ["ggo", "consolidation", "any_lesion"]
    rows = list(csv.DictReader((work / "seg" / "oof-dice.csv").open()))
    for label, row in seg["classes"].items():
        for column, summary in ((f"dice_{label}", row), (f"native_dice_{label}", row["native"])):
            values = [float(r[column]) for r in rows if r[column]]
            assert len(values) == 10
            assert summary["oof_mean_dice"]["value"] == pytest.approx(np.mean(values), abs=1e-3)
    for fold in seg["per_fold"]:
        assert set(fold["test_mean_dice"]) == {"ggo", "consolidation", "any_lesion"}
    assert "| any_lesion |" in (work / "seg" / "seg-cv-report.md").read_text()


def test_folds_1_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["train", "detect", "--folds", "1"])
    assert caught.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least 2 folds" in err[0]


def test_a_segmenter_bundle_backbone_is_refused_for_cross_validation():
    """The shipped U-Net's encoder saw training slices that a CV tests."""
    with pytest.raises(ChestlensInputError, match="cross-validation tests"):
        check_cv_backbone(DetectConfig(backbone_weights="lesions-ct-segmenter"))
    check_cv_backbone(DetectConfig(backbone_weights="default"))
    check_cv_backbone(DetectConfig(backbone_weights=None))


def test_segmenter_components_are_scored_by_their_class_probability():
    import torch

    logits = torch.full((1, 3, 16, 16), -4.0)
    logits[0, 0] = 4.0  # background
    logits[0, 1, 2:6, 2:6] = 8.0  # a GGO square
    logits[0, 2, 10:14, 10:14] = 5.0  # a weaker consolidation square
    logits[0, 1, 10:14, 10:14] = 4.9
    probabilities = class_probabilities(logits)
    label_map = probabilities[0].argmax(0).astype(np.uint8)
    instances = component_instances(label_map, probabilities[0], ["ggo", "consolidation"], 10)
    assert [(i.label, int(i.mask.sum())) for i in instances] == [("ggo", 16), ("consolidation", 16)]
    softmax = np.exp([8.0, 4.0, -4.0]) / np.exp([8.0, 4.0, -4.0]).sum()  # GGO, background, consolidation
    assert instances[0].score == pytest.approx(softmax[0]) and 0.4 < instances[1].score < 0.6
    assert instances[0].box == (2, 2, 6, 6)
    binary = class_probabilities(torch.full((1, 1, 4, 4), 0.0))
    assert binary.shape == (1, 2, 4, 4) and np.allclose(binary, 0.5)
