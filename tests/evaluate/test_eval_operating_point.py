"""Thresholds chosen on validation, the decision rule, and metrics at the operating point on test."""

from __future__ import annotations

import numpy as np
import pytest

from chestlens.evaluate import (
    DecisionRule,
    choose_threshold,
    choose_threshold_for_specificity,
    evaluate_classifier,
)

LABELS = ["COVID-19", "pneumonia", "normal"]


def _brute_force(y: np.ndarray, scores: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, sensitivity, specificity) of ``score >= t`` for every observed score ``t``."""
    return [(t, (scores[y] >= t).mean(), (scores[~y] < t).mean()) for t in np.unique(scores)]


def test_threshold_on_a_hand_example():
    y = np.array([1, 1, 1, 1, 0, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.65, 0.1])
    point = choose_threshold(y, scores, 0.75)  # 3 of 4 positives needed: t = 0.7, no negative >= 0.7
    assert (point.threshold, point.sensitivity, point.specificity) == (0.7, 0.75, 1.0)
    point = choose_threshold(y, scores, 1.0)  # all 4: t = 0.6, which also flags the negative at 0.65
    assert (point.threshold, point.sensitivity, point.specificity) == (0.6, 1.0, pytest.approx(2 / 3))
    assert point.n_positive == 4 and point.n_negative == 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_is_the_highest_reaching_the_target_on_validation(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(400) < 0.3
    scores = np.round(np.clip(rng.normal(0.4 + 0.3 * y, 0.2), 0, 1), 3)
    point = choose_threshold(y, scores, 0.95)
    assert point.sensitivity >= 0.95
    best = max(t for t, sens, _ in _brute_force(y, scores) if sens >= 0.95)
    assert point.threshold == best
    assert point.specificity == pytest.approx((scores[~y] < best).mean())
    for_spec = choose_threshold_for_specificity(y, scores, 0.9)
    lowest = min(t for t, _, spec in _brute_force(y, scores) if spec >= 0.9)
    assert for_spec.threshold == lowest and for_spec.specificity >= 0.9


def test_threshold_needs_both_classes():
    with pytest.raises(ValueError, match="positives and negatives"):
        choose_threshold(np.ones(5, bool), np.linspace(0, 1, 5))


def test_decision_rule_flags_above_threshold_else_argmax_of_the_rest():
    probs = np.array(
        [
            [0.30, 0.50, 0.20],  # COVID-19 >= 0.25 although not the argmax -> COVID-19
            [0.20, 0.30, 0.50],  # below -> argmax of the rest: normal
            [0.24, 0.40, 0.36],  # below -> pneumonia
            [0.22, 0.38, 0.40],  # below -> normal
            [0.50, 0.20, 0.30],  # COVID-19
        ]
    )
    rule = DecisionRule.from_operating_points(
        [choose_threshold([1, 0], [0.25, 0.1], 1.0).to_threshold("COVID-19")]
    )
    assert rule.predict(probs, LABELS).tolist() == [0, 2, 1, 2, 0]
    high = DecisionRule(thresholds=[{"label": "COVID-19", "threshold": 0.6}])
    assert high.predict(probs, LABELS).tolist() == [1, 2, 1, 2, 2]  # argmax would say COVID-19 for the last
    assert DecisionRule.argmax().predict(probs, LABELS).tolist() == [1, 2, 1, 2, 0]
    assert "COVID-19 if p(COVID-19) >= 0.6" in high.describe()
    with pytest.raises(ValueError, match="not in"):
        DecisionRule(thresholds=[{"label": "flu", "threshold": 0.5}]).predict(probs, LABELS)


def test_bundle_round_trip():
    from chestlens.models.spec import ClassThreshold

    point = choose_threshold(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.3, 0.1]), 0.95)
    stored = ClassThreshold.model_validate_json(point.to_threshold("COVID-19").model_dump_json())
    assert stored.criterion == "sensitivity>=0.95 on validation" and stored.validation_sensitivity == 1.0
    rule = DecisionRule.from_operating_points([stored])
    assert rule.thresholds[0].threshold == 0.4 and rule.thresholds[0].validation_specificity == 1.0


def test_chosen_on_validation_reported_on_test(synthetic):
    validation, test = synthetic(200, seed=10), synthetic(200, seed=11)
    point = choose_threshold(validation.y == 0, validation.probs[:, 0], 0.95)
    rule = DecisionRule(thresholds=[point.to_threshold("COVID-19")])
    report = evaluate_classifier(test.y, test.probs, test.labels, test.patients, decision=rule, n_boot=200)
    [result] = report.overall.operating_points
    assert result.threshold == point.threshold and result.validation_sensitivity == point.sensitivity >= 0.95
    flagged = test.probs[:, 0] >= point.threshold
    assert result.sensitivity.value == pytest.approx(flagged[test.y == 0].mean())
    assert result.specificity.value == pytest.approx(1 - flagged[test.y != 0].mean())
    assert result.sensitivity.low <= result.sensitivity.value <= result.sensitivity.high
    # The first thresholded class is decided exactly when flagged, so its per-class metrics agree.
    assert report.overall.per_class[0].sensitivity == result.sensitivity
    assert report.overall.per_class[0].n_predicted == result.n_flagged
    assert report.decision_description.startswith("COVID-19 if p(COVID-19) >=")
