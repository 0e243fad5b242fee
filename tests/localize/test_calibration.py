"""Served confidence: a temperature fitted on validation logits, the record kept with a version, and the threshold
read from it for a target accuracy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from localize.calibration import (
    TEMPERATURE_RANGE,
    calibration_record,
    check_target_accuracy,
    fit_calibration,
    fit_temperature,
    combined_share,
    fit_calibration_correction,
    spread_evenly,
    threshold_for,
)


def _overconfident(rows: int, scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(z); the model reports z * scale (overconfident for scale > 1)."""
    generator = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(rows, 3, generator=generator) * 1.5
    labels = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=generator).squeeze(1)
    return true_logits * scale, labels


def test_fit_temperature_recovers_how_overconfident_logits_are() -> None:
    logits, labels = _overconfident(4000, scale=2.5)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.12)
    logits, labels = _overconfident(4000, scale=0.5, seed=1)
    assert fit_temperature(logits, labels) == pytest.approx(0.5, rel=0.12)


def test_fit_temperature_stays_near_one_on_few_rows_and_within_its_range() -> None:
    # Three rows, all right: the likelihood alone would push toward certainty; the pull toward 1 holds it back.
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    temperature = fit_temperature(logits, torch.tensor([0, 1, 0]))
    assert TEMPERATURE_RANGE[0] <= temperature < 1.0
    assert temperature > 0.4
    assert fit_temperature(torch.empty(0, 2), torch.empty(0, dtype=torch.long)) == 1.0
    # Label shares (a task prior's soft targets) work as targets too.
    assert fit_temperature(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])) > 0


def test_fit_calibration_finds_the_share_of_labels_an_annotator_gives_at_random() -> None:
    # The model knows the consistent reading (labels drawn from softmax(z)), but 30% of the labels were given at
    # random: a temperature alone would flatten every answer; the share of noise is found instead.
    logits, labels = _overconfident(6000, scale=1.0, seed=2)
    generator = torch.Generator().manual_seed(3)
    noisy = torch.rand(len(labels), generator=generator) < 0.3
    labels = torch.where(noisy, torch.randint(0, 3, (len(labels),), generator=generator), labels)
    temperature, share = fit_calibration(logits, labels)
    assert share == pytest.approx(0.3, abs=0.05) and temperature == pytest.approx(1.0, rel=0.15)
    # Clean labels: no share, and the temperature alone is what fit_temperature finds.
    logits, labels = _overconfident(4000, scale=2.0, seed=4)
    temperature, share = fit_calibration(logits, labels)
    assert share <= 0.02 and temperature == pytest.approx(fit_temperature(logits, labels), rel=0.05)
    assert fit_calibration(torch.empty(0, 3), torch.empty(0, dtype=torch.long)) == (1.0, 0.0)


def test_spreading_a_share_keeps_the_answer_and_sums_to_one() -> None:
    probabilities = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3]])
    spread = spread_evenly(probabilities, 0.3)
    assert torch.allclose(spread.sum(-1), torch.ones(2)) and torch.equal(spread.argmax(-1), probabilities.argmax(-1))
    assert spread[0].tolist() == pytest.approx([0.73, 0.17, 0.1])
    assert spread_evenly(probabilities, 0.0) is probabilities


def test_threshold_for_a_target_accuracy_reads_the_record() -> None:
    probabilities = np.array([[0.55, 0.45], [0.6, 0.4], [0.8, 0.2], [0.9, 0.1], [0.95, 0.05]])
    truth = np.array([1, 0, 0, 0, 0])  # the least confident row is wrong
    record = calibration_record(probabilities, truth)
    assert record["confidence"] == sorted(record["confidence"]) and record["correct"] == [0, 1, 1, 1, 1]
    assert threshold_for(record, 0.8) == pytest.approx(0.55)  # 4 of 5 right when answering everything
    assert threshold_for(record, 0.9) == pytest.approx(0.6)
    assert threshold_for(record, 1.0) == pytest.approx(0.6)
    never = calibration_record(probabilities, np.array([1, 1, 1, 1, 1]))
    assert threshold_for(never, 0.5) > 0.95  # no threshold reaches it: abstain on all it could judge
    assert threshold_for(None, 0.9) is None and threshold_for({"confidence": [], "correct": []}, 0.9) is None


def test_a_record_is_capped_by_an_even_subsample() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet([1, 1], size=5000)
    record = calibration_record(probabilities, rng.integers(0, 2, 5000))
    assert len(record["confidence"]) == 300 == len(record["correct"])
    assert record["confidence"][0] == pytest.approx(probabilities.max(1).min(), abs=1e-4)


@pytest.mark.parametrize("value", [0, -0.1, 1.5, "high", None])
def test_a_target_accuracy_outside_zero_to_one_is_named(value: object) -> None:
    with pytest.raises(ValueError, match="target_accuracy=.* must be a number in \\(0, 1\\]"):
        check_target_accuracy(value)  # type: ignore[arg-type]


def test_a_task_wide_correction_is_recovered_from_many_versions_held_out_rows() -> None:
    """Versions whose own calibration left them surer than they are right by the same factor, each with its own
    uniform share, on labels of which a share is given at random: the correction fitted on their pooled held-out
    rows finds both, and no rows means no correction."""
    logits, shares, targets = [], [], []
    generator = np.random.default_rng(0)
    for version in range(16):
        true_logits, labels = _overconfident(400, scale=1.0, seed=10 + version)
        noisy = labels.numpy().copy()
        flipped = generator.random(len(noisy)) < 0.3
        noisy[flipped] = generator.integers(0, 3, flipped.sum())
        logits.append((true_logits * 1.8).numpy())
        shares.append(0.0 if version % 2 else 0.05)
        targets.append(noisy)
    scale, added = fit_calibration_correction(logits, shares, targets)
    assert scale == pytest.approx(1.8, rel=0.2)
    # Each row's label is random with probability 0.3: a share of 0.3 in all, of which each version had 0 or 0.05.
    assert combined_share(0.025, added) == pytest.approx(0.3, abs=0.08)
    calibrated = [z / 1.8 for z in logits]
    clean = [np.asarray(labels) for labels in (_overconfident(400, 1.0, seed=10 + v)[1].numpy() for v in range(16))]
    scale, added = fit_calibration_correction(calibrated, [0.0] * 16, clean)
    assert scale == pytest.approx(1.0, abs=0.15) and added <= 0.02
    assert fit_calibration_correction([], [], []) == (1.0, 0.0)
    assert combined_share(0.2, 0.5) == pytest.approx(0.6)
