"""Slice predictions of a CT series against its slice labels (block bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from chestlens.errors import ChestlensInputError
from chestlens.evaluate.ct_series import (
    BLOCK_SLICES,
    compare_slices,
    involvement_threshold,
    slice_report_markdown,
)


def test_counts_rates_and_auc_follow_the_labels():
    labels = [False] * 20 + [True] * 20
    scores = [0.0] * 18 + [0.6, 0.7] + [0.0, 0.0] + [0.8] * 18  # 2 FP, 2 FN
    report = compare_slices("P", scores, labels, series_score=0.8, n_boot=200)
    assert report.confusion == {"tn": 18, "fp": 2, "fn": 2, "tp": 18}
    assert report.sensitivity.value == pytest.approx(0.9) and report.specificity.value == pytest.approx(0.9)
    # the two FN score 0 (below every negative's 0.6/0.7 and tied with 18 of them)
    assert report.auc.value == pytest.approx((18 * 20 + 2 * 18 * 0.5) / 400)
    assert report.auc.low <= report.auc.value <= report.auc.high
    assert report.block_slices == BLOCK_SLICES
    assert any("Slice AUC" in line for line in slice_report_markdown(report))


def test_blocks_of_neighbouring_slices_widen_the_interval(monkeypatch):
    """Errors that run over neighbouring slices (as along a real series) count once per block."""
    from chestlens.evaluate import ct_series

    labels = np.tile(np.repeat([False, True], 10), 4)
    scores = np.where(labels, 0.7, 0.0)  # 0: no lesion region found
    scores[10:20] = 0.0  # one whole labelled-infected block missed
    scores[40:50] = 0.8  # one whole clean block flagged

    def width(block: int) -> float:
        monkeypatch.setattr(ct_series, "BLOCK_SLICES", block)
        report = compare_slices("P", scores, labels, series_score=0.8, n_boot=400)
        return report.sensitivity.high - report.sensitivity.low

    assert width(10) > 1.5 * width(1)


def test_lengths_must_match():
    with pytest.raises(ChestlensInputError, match="do not match"):
        compare_slices("P", [0.1, 0.2], [True], series_score=0.2)


def test_the_involvement_threshold_is_the_best_youden_cut_of_the_slices():
    fractions = [0.0, 0.0, 0.001, 0.002, 0.0031, 0.004, 0.02, 0.0, 0.05]
    labels = [False, False, False, False, True, True, True, True, True]
    # at 0.0031 every clean slice stays below and 4 of 5 infected reach it (J = 0.8); lower cuts add FP
    assert involvement_threshold(fractions, labels) == 0.0031
    assert involvement_threshold([0.012345, 0.0], [True, False]) == 0.012  # two significant digits


def test_the_involvement_threshold_needs_both_kinds_of_slices():
    with pytest.raises(ChestlensInputError, match="infected and clean"):
        involvement_threshold([0.1, 0.2], [True, True])
    with pytest.raises(ChestlensInputError, match="infected and clean"):
        involvement_threshold([0.1], [True, False])
    with pytest.raises(ChestlensInputError, match="no slice has lesions"):
        involvement_threshold([0.0, 0.0], [True, False])


def test_the_report_states_the_series_verdict_and_its_threshold():
    report = compare_slices(
        "P",
        [0.0, 0.8],
        [False, True],
        series_score=0.8,
        series_verdict="lesions found",
        series_threshold=0.0038,
        lung_fraction_total=0.01,
        n_boot=0,
    )
    text = "\n".join(slice_report_markdown(report))
    assert "**lesions found** (lungs involved from 0.38% on)" in text
