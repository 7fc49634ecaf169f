"""COCO-style AP of instance masks and boxes: edge cases, per-class separation, COCO parity, bootstrap."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from chestlens.data.annotations import ImagePrediction, Instance, export_coco, mask_box, results_path
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.detection import (
    _coco_pair,
    _prepare_class,
    evaluate_detections,
    run_cocoeval,
    weighted_ap,
)

SHAPE = (64, 64)
LABELS = ["ggo", "consolidation"]


def square(label: str, row: int, col: int, side: int = 10, score: float | None = None) -> Instance:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[row : row + side, col : col + side] = True
    return Instance(label, mask, mask_box(mask), score)


def scores_of(report, iou: str = "segm", k: int | None = None) -> tuple:
    ap = getattr(report, iou) if k is None else getattr(report.per_class[k], iou)
    return ap.ap50.value, ap.ap75.value, ap.map.value


def random_images(n: int, seed: int) -> tuple[list[list[Instance]], list[list[Instance]]]:
    """Ground truth and noisy predictions (shifted copies, misses, false positives, distinct scores)."""
    rng = np.random.default_rng(seed)
    truth, predicted = [], []
    for _ in range(n):
        gt, dt = [], []
        for _ in range(rng.integers(0, 4)):
            label, (row, col), side = (
                LABELS[rng.integers(0, 2)],
                rng.integers(0, 48, 2),
                int(rng.integers(4, 14)),
            )
            gt.append(square(label, row, col, side))
            if rng.random() < 0.8:
                dr, dc = rng.integers(-2, 3, 2)
                dt.append(square(label, max(row + dr, 0), max(col + dc, 0), side, float(rng.random())))
        for _ in range(rng.integers(0, 3)):
            row, col = rng.integers(0, 48, 2)
            dt.append(
                square(LABELS[rng.integers(0, 2)], row, col, int(rng.integers(4, 14)), float(rng.random()))
            )
        truth.append(gt)
        predicted.append(dt)
    return truth, predicted


def test_perfect_predictions_score_one_and_empty_images_change_nothing():
    truth = [[square("ggo", 5, 5), square("consolidation", 30, 30)], [], [square("ggo", 40, 10, 8)]]
    predicted = [
        [square(i.label, int(i.box[1]), int(i.box[0]), int(i.box[2] - i.box[0]), 0.9) for i in t]
        for t in truth
    ]
    report = evaluate_detections(truth, predicted, [SHAPE] * 3, LABELS)
    # COCO's precision is tp / (tp + fp + eps), so "1" is 1 - 2e-16
    for iou in ("segm", "bbox"):
        for k in (None, 0, 1):
            assert scores_of(report, iou, k) == pytest.approx((1.0, 1.0, 1.0))
    assert [(c.n_gt, c.n_pred, c.n_images_with_gt) for c in report.per_class] == [(2, 2, 2), (1, 1, 1)]
    assert report.n_images == 3 and report.n_patients == 3 and not report.warnings
    padded = evaluate_detections([*truth, [], []], [*predicted, [], []], [SHAPE] * 5, LABELS)
    assert scores_of(padded) == scores_of(report)


def test_no_predictions_score_zero():
    report = evaluate_detections([[square("ggo", 5, 5)], []], [[], []], [SHAPE] * 2, LABELS)
    assert scores_of(report, "segm", 0) == (0.0, 0.0, 0.0)
    assert report.per_class[1].segm.ap50.value is None
    assert report.per_class[1].segm.ap50.reason == "no ground-truth instance of this class"
    assert scores_of(report) == (0.0, 0.0, 0.0)  # the undefined class is left out of the mean
    assert report.warnings == ["no ground-truth instance of 'consolidation': its AP is undefined"]


@pytest.mark.parametrize(
    ("shift", "expected"),
    [
        (0, (1.0, 1.0, 1.0)),
        (1, (1.0, 1.0, 0.7)),  # IoU 90/110 = 0.82: passes 0.50..0.80 (7 of 10 thresholds)
        (2, (1.0, 0.0, 0.4)),  # IoU 80/120 = 0.67: passes 0.50..0.65
        (6, (0.0, 0.0, 0.0)),  # IoU 40/160 = 0.25
    ],
)
def test_a_shifted_mask_loses_ap75_before_ap50(shift, expected):
    report = evaluate_detections(
        [[square("ggo", 20, 20)]], [[square("ggo", 20, 20 + shift, score=0.8)]], [SHAPE], LABELS
    )
    assert scores_of(report, "segm") == pytest.approx(expected)
    assert scores_of(report, "bbox") == pytest.approx(expected)  # squares: box IoU = mask IoU


def test_classes_are_scored_separately():
    truth = [[square("ggo", 5, 5), square("consolidation", 30, 30)]]
    # the second prediction is in the right place with the wrong class
    predicted = [[square("ggo", 5, 5, score=0.9), square("ggo", 30, 30, score=0.8)]]
    report = evaluate_detections(truth, predicted, [SHAPE], LABELS)
    assert scores_of(report, "segm", 0) == pytest.approx((1.0, 1.0, 1.0))  # the extra ggo ranks below
    assert scores_of(report, "segm", 1) == (0.0, 0.0, 0.0)
    assert scores_of(report) == pytest.approx((0.5, 0.5, 0.5))


def test_false_positive_on_an_empty_image_counts():
    truth = [[square("ggo", 5, 5)], []]
    predicted = [[square("ggo", 5, 5, score=0.5)], [square("ggo", 30, 30, score=0.9)]]
    report = evaluate_detections(truth, predicted, [SHAPE] * 2, LABELS, iou_types=["bbox"])
    assert scores_of(report, "bbox", 0) == pytest.approx((0.5, 0.5, 0.5))  # precision 1/2 at every recall
    assert report.segm is None and report.per_class[0].segm is None


def test_matches_cocoeval_on_the_exported_coco_files(tmp_path):
    truth, predicted = random_images(12, seed=0)
    ours = evaluate_detections(truth, predicted, [SHAPE] * 12, LABELS)

    def export(images, name):
        batch = [ImagePrediction(f"{i}.png", SHAPE[1], SHAPE[0], inst) for i, inst in enumerate(images)]
        return export_coco(batch, tmp_path / name, categories=LABELS)[0]

    gt_file, dt_file = export(truth, "gt.json"), results_path(export(predicted, "dt.json"))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        for iou in ("segm", "bbox"):
            evaluator = COCOeval(gt, gt.loadRes(str(dt_file)), iou)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()  # stats[0] AP@[.5:.95], [1] AP50, [2] AP75: all areas, 100 detections
            assert scores_of(ours, iou) == pytest.approx(
                (evaluator.stats[1], evaluator.stats[2], evaluator.stats[0])
            )


def test_weighted_accumulation_equals_cocoeval_on_duplicated_images():
    truth, predicted = random_images(10, seed=1)
    weights = np.array([2, 0, 1, 3, 1, 0, 1, 1, 2, 1], dtype=float)
    gt, dt = _coco_pair(truth, predicted, [SHAPE] * 10, LABELS)
    evaluator = run_cocoeval(gt, dt, "segm", 100)
    copies = [i for i, w in enumerate(weights) for _ in range(int(w))]
    gt2, dt2 = _coco_pair(
        [truth[i] for i in copies], [predicted[i] for i in copies], [SHAPE] * len(copies), LABELS
    )
    duplicated = run_cocoeval(gt2, dt2, "segm", 100)
    for k in range(len(LABELS)):
        prepared = _prepare_class(evaluator.evalImgs[k * 10 : (k + 1) * 10])
        both = weighted_ap(np.stack([np.ones(10), weights]), *prepared)
        np.testing.assert_allclose(
            both[0], evaluator.eval["precision"][:, :, k, 0, 0].mean(axis=1), atol=1e-12
        )
        np.testing.assert_allclose(
            both[1], duplicated.eval["precision"][:, :, k, 0, 0].mean(axis=1), atol=1e-12
        )


def test_patient_bootstrap_interval():
    truth, predicted = random_images(30, seed=2)
    patients = [f"p{i // 2}" for i in range(30)]
    report = evaluate_detections(
        truth, predicted, [SHAPE] * 30, LABELS, patient_ids=patients, n_boot=100, seed=1
    )
    assert report.n_patients == 15 and report.bootstrap.n_boot == 100
    for ap in (report.segm.ap50, report.segm.map, report.per_class[1].bbox.ap75):
        assert ap.low <= ap.value <= ap.high and ap.n_valid + ap.n_skipped == 100
    again = evaluate_detections(
        truth, predicted, [SHAPE] * 30, LABELS, patient_ids=patients, n_boot=100, seed=1
    )
    assert again == report


def test_input_errors():
    box_only = Instance("ggo", None, (1.0, 1.0, 5.0, 5.0))
    with pytest.raises(ChestlensInputError, match="box-only"):
        evaluate_detections([[box_only]], [[]], [SHAPE], LABELS)
    assert evaluate_detections([[box_only]], [[]], [SHAPE], LABELS, iou_types=["bbox"]).bbox.ap50.value == 0.0
    with pytest.raises(ChestlensInputError, match="one prediction list"):
        evaluate_detections([[]], [[], []], [SHAPE], LABELS)
    with pytest.raises(ChestlensInputError, match="'lung' is not one of the categories"):
        evaluate_detections([[square("lung", 1, 1)]], [[]], [SHAPE], LABELS)
