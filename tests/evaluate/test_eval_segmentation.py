"""Segmentation metrics: hand-computed images, the empty-mask policy, HD95, aggregation and bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from chestlens.evaluate.segmentation import (
    SegmentationReport,
    _statistic,
    evaluate_segmentation,
    hd95,
    labels_from_logits,
    score_image,
)

# Image 0 (4x4, class 1; 255 = ignore): TP = 3, FP = 1, FN = 1; predictions in the ignore row are not scored.
TARGET0 = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [255, 255, 0, 0]], np.uint8)
PRED0 = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]], np.uint8)


def _dataset() -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Image 0: true_positive; 1: false_negative (2 px missed); 2: true_negative; 3: false_positive (2 px)."""
    empty = np.zeros((4, 4), np.uint8)
    two = empty.copy()
    two[0, :2] = 1
    preds = [PRED0, empty, empty, two]
    targets = [TARGET0, two, empty, empty]
    return preds, targets, ["p1", "p1", "p2", "p3"]


def test_score_image_by_hand():
    (s,) = score_image(PRED0, TARGET0, ["ptx"])
    assert (s.case, s.tp, s.fp, s.fn) == ("true_positive", 3, 1, 1)
    assert s.dice == pytest.approx(0.75) and s.iou == pytest.approx(0.6)
    assert s.sensitivity == pytest.approx(0.75) and s.precision == pytest.approx(0.75)
    assert s.hd95_px is None


@pytest.mark.parametrize(
    ("pred", "target", "case", "dice", "sensitivity", "precision"),
    [
        ([[0, 0]], [[0, 0]], "true_negative", 1.0, None, None),
        ([[0, 1]], [[0, 0]], "false_positive", 0.0, None, 0.0),
        ([[0, 0]], [[1, 0]], "false_negative", 0.0, 0.0, None),
        ([[1, 1]], [[255, 255]], "true_negative", 1.0, None, None),  # prediction only where ignored
    ],
)
def test_empty_mask_policy(pred, target, case, dice, sensitivity, precision):
    (s,) = score_image(np.array(pred), np.array(target), ["ptx"], with_hd95=True)
    assert (s.case, s.dice, s.iou, s.sensitivity, s.precision, s.hd95_px) == (
        case,
        dice,
        dice,
        sensitivity,
        precision,
        None,
    )


def test_multiclass_scores_each_class():
    target = np.array([[1, 1, 2, 0]])
    pred = np.array([[1, 2, 2, 2]])
    ggo, cons = score_image(pred, target, ["ggo", "consolidation"])
    assert (ggo.tp, ggo.fp, ggo.fn) == (1, 0, 1)
    assert (cons.tp, cons.fp, cons.fn) == (1, 2, 0)
    assert cons.dice == pytest.approx(0.5)


def test_hd95_by_hand():
    a, b = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    a[2, 2], b[2, 5] = True, True
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, b, spacing=(2.0, 0.5)) == pytest.approx(1.5)  # 3 columns of 0.5 mm
    square = np.zeros((8, 8), bool)
    square[1:5, 1:5] = True
    assert hd95(square, square) == 0.0


def _surface_brute(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return np.argwhere(mask & ~inner)


def test_hd95_matches_brute_force():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:20, :24]
    a = (yy - 8) ** 2 + (xx - 9) ** 2 < 30
    b = ((yy - 10) ** 2 / 2 + (xx - 13) ** 2 < 40) | (rng.random((20, 24)) > 0.97)
    pa, pb = _surface_brute(a), _surface_brute(b)
    spacing = np.array([0.7, 1.3])
    d = cdist(pa * spacing, pb * spacing)
    expected = max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))
    assert hd95(a, b, spacing=tuple(spacing)) == pytest.approx(expected)


def test_labels_from_logits():
    binary = np.array([[[-1.0, 0.5]]])  # (C=1, H=1, W=2)
    np.testing.assert_array_equal(labels_from_logits(binary), [[0, 1]])
    np.testing.assert_array_equal(labels_from_logits(binary, threshold=0.7), [[0, 0]])  # logit(0.7) = 0.85
    multi = np.array([[[0.0, 3.0]], [[1.0, 0.0]], [[0.5, 2.0]]])  # (C=3, 1, 2)
    np.testing.assert_array_equal(labels_from_logits(multi[None]), [[[1, 0]]])


def test_aggregates_by_hand():
    preds, targets, patients = _dataset()
    report = evaluate_segmentation(preds, targets, ["ptx"], patients, n_boot=0)
    (m,) = report.per_class
    assert m.cases.model_dump() == {
        "true_negative": 1,
        "false_positive": 1,
        "false_negative": 1,
        "true_positive": 1,
    }
    assert m.dice.value == pytest.approx(0.375)  # images 0 and 1: (0.75 + 0) / 2
    assert m.iou.value == pytest.approx(0.3)
    assert m.sensitivity.value == pytest.approx(0.375)
    assert m.precision.value == pytest.approx(0.75)  # image 0 only (image 1 predicts nothing)
    assert m.dice_all_images.value == pytest.approx(0.4375)  # (0.75 + 0 + 1 + 0) / 4
    assert m.pooled_dice.value == pytest.approx(0.5)  # TP 3, FP 3, FN 3
    assert m.pooled_iou.value == pytest.approx(1 / 3)
    assert m.pooled_sensitivity.value == pytest.approx(0.5)
    assert m.pooled_precision.value == pytest.approx(0.5)
    assert m.hd95_px.value is None and "not computed" in m.hd95_px.reason
    assert m.dice.low is None and (report.n_images, report.n_patients) == (4, 3)
    assert any("Only 3 patients" in w for w in report.warnings)


def test_bootstrap_weights_equal_duplicated_images():
    preds, targets, _ = _dataset()
    scores = [score_image(p, t, ["ptx"]) for p, t in zip(preds, targets, strict=True)]
    weighted = _statistic(scores)(np.array([[2.0, 2.0, 0.0, 1.0]]))
    copies = [0, 0, 1, 1, 3]
    direct = evaluate_segmentation(
        [preds[i] for i in copies], [targets[i] for i in copies], ["ptx"], [str(i) for i in copies], n_boot=0
    ).per_class[0]
    for name in ("dice", "precision", "dice_all_images", "pooled_dice", "pooled_iou"):
        assert weighted[name][0, 0] == pytest.approx(getattr(direct, name).value), name


def test_confidence_intervals_hd95_and_json_round_trip():
    preds, targets, patients = _dataset()
    spacings = [(0.5, 0.5), None, None, None]
    report = evaluate_segmentation(
        preds, targets, ["ptx", "other"], patients, spacings=spacings, with_hd95=True, n_boot=200, seed=1
    )
    ptx, other = report.per_class
    assert ptx.dice.low <= ptx.dice.value <= ptx.dice.high
    assert ptx.dice.n_valid + ptx.dice.n_skipped == 200 and ptx.dice.n_skipped > 0  # resamples of p2, p3 only
    assert ptx.hd95_px.value == pytest.approx(hd95(PRED0[:3] == 1, TARGET0[:3] == 1))
    assert ptx.hd95_mm.value == pytest.approx(ptx.hd95_px.value * 0.5)
    assert other.dice.value is None and other.dice.reason == "no image with a non-empty target"
    assert other.dice_all_images.value == 1.0 and other.cases.true_negative == 4
    assert any("Class other has no image with a non-empty target" in w for w in report.warnings)
    assert SegmentationReport.model_validate_json(report.model_dump_json()) == report


def test_multiclass_reports_add_the_merged_any_lesion_row(tmp_path):
    """Class confusions cost class Dice but not the binary infection Dice of the merged row."""
    import torch

    from chestlens.data.tensors import LabelledImages
    from chestlens.evaluate.seg_eval import ANY_LESION, evaluate_label_maps, seg_metrics_summary
    from chestlens.models.spec import BundleSpec
    from chestlens.preprocess.spec import PreprocessSpec

    spec = BundleSpec(
        name="t",
        version="0",
        kind="segmenter",
        task="lesions-ct",
        architecture="unet",
        architecture_kwargs={"encoder": "efficientnet_lite0", "mode": "multiclass"},
        labels=["background", "ggo", "consolidation"],
        preprocess=PreprocessSpec(input_size=16, mean=[0.5], std=[0.5]),
    )
    targets = torch.zeros(2, 16, 16, dtype=torch.uint8)
    targets[:, 2:8, 2:8] = 1
    targets[:, 10:14, 10:14] = 2
    preds = targets.numpy().copy()
    preds[:, 10:14, 10:14] = 1  # consolidation called GGO
    ids = ("a", "b")
    data = LabelledImages(torch.rand(2, 1, 16, 16), targets, ids, ("s", "s"), ids)
    report, _ = evaluate_label_maps(spec, data, preds, tmp_path, title="t", data_info={}, n_boot=0)
    dice = {m.label: m.dice.value for m in report.per_class}
    assert dice[ANY_LESION] == 1.0 and dice["consolidation"] == 0.0 and dice["ggo"] < 1.0
    assert seg_metrics_summary(report)["mean_dice"] == np.mean([dice["ggo"], dice["consolidation"]])
