"""Calibration error and abstaining, on probabilities small enough to check by hand."""
from __future__ import annotations

import numpy as np
import pytest

from localize.calibration import expected_calibration_error
from localize.evaluation.calibration import coverage_accuracy, per_user_abstention, pick_threshold, reliability


def test_ece_is_the_row_weighted_gap_between_confidence_and_accuracy() -> None:
    # Two rows at confidence 0.9 (one right, one wrong: accuracy 0.5) and two at 0.6 (both right).
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    assert expected_calibration_error(p, y) == pytest.approx((2 * 0.4 + 2 * 0.4) / 4)
    assert reliability(p, y) == [(pytest.approx(0.6), 1.0, 2), (pytest.approx(0.9), 0.5, 2)]


def test_a_perfectly_calibrated_model_has_zero_ece() -> None:
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(p, np.array([0, 1])) == 0.0


def test_coverage_falls_and_accuracy_rises_with_the_threshold() -> None:
    users = {"a": (np.array([[0.95, 0.05], [0.6, 0.4], [0.55, 0.45]]), np.array([0, 1, 0])),
             "b": (np.array([[0.3, 0.7], [0.2, 0.8]]), np.array([1, 1]))}
    coverage, accuracy = coverage_accuracy(users, np.array([0.5, 0.9]))
    assert coverage.tolist() == pytest.approx([1.0, (1 / 3 + 0) / 2])
    assert accuracy.tolist() == pytest.approx([(2 / 3 + 1) / 2, 1.0])  # at 0.9 only a answers, and is right


def test_threshold_is_the_lowest_confidence_reaching_the_target_on_validation() -> None:
    p = np.array([[0.55, 0.45], [0.65, 0.35], [0.8, 0.2], [0.9, 0.1]])
    y = np.array([1, 0, 0, 0])  # only the least confident row is wrong
    assert pick_threshold(p, y, 0.75) == pytest.approx(0.55)  # 3/4 right when answering all
    assert pick_threshold(p, y, 0.9) == pytest.approx(0.65)
    assert pick_threshold(p, np.array([1, 1, 1, 1]), 0.5) == 1.0  # never right: answer nothing
    result = per_user_abstention({"u": (p, y)}, {"u": (p, y)}, 0.9)
    assert result == {"target_accuracy": 0.9, "users": 1, "mean_coverage": 0.75, "mean_accuracy_answered": 1.0}
