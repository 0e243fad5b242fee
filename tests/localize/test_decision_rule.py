"""A task's decision rule: offsets kept only where users they were not fitted on gain from them."""
from __future__ import annotations

import numpy as np
import pytest

from localize import decision_rule
from localize.decision_rule import fit_decision_rule
from localize.training import classification_metrics


def _users(count: int, rows: int, bias: float, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Users whose served logits read label 1 ``bias`` too low: a 30% minority with a noisy signal for it."""
    rng = np.random.default_rng(seed)
    users = []
    for _ in range(count):
        targets = (rng.random(rows) < 0.3).astype(int)
        signal = 2.0 * targets - 1.0 + rng.normal(0.0, 1.2, rows)
        users.append((targets, np.stack([np.zeros(rows), signal - bias], 1)))
    return users


def test_offsets_that_every_user_gains_from_are_kept() -> None:
    rule = fit_decision_rule(_users(40, 60, bias=1.5, seed=0), ["no", "yes"])
    assert 0.8 <= rule.offsets["yes"] <= 2.0 and "no" not in rule.offsets  # the first label's stays 0
    assert rule.gain > 0.02 and rule.gain_t >= decision_rule.MIN_T and isinstance(rule.gain_t, float)


def test_offsets_that_users_they_were_not_fitted_on_do_not_gain_from_are_not_kept() -> None:
    # The best of 81 offsets gains on the rows it was picked on; on the other users' rows it does not.
    rule = fit_decision_rule(_users(3, 20, bias=0.0, seed=1), ["no", "yes"])
    assert rule.offsets == {} and (rule.gain_t is None or rule.gain_t < decision_rule.MIN_T)
    # Perfectly separated rows: every small offset scores the same, and a tie keeps none.
    separated = [(np.array([0, 1, 1]), np.array([[2.0, -2.0], [-2.0, 2.0], [-3.0, 3.0]]))] * 5
    tied = fit_decision_rule(separated, ["no", "yes"])
    assert tied.offsets == {} and tied.gain == 0 and tied.gain_t is None
    assert fit_decision_rule(separated[:1], ["no", "yes"]) is None  # one user: nothing to measure it on


def test_three_labels_search_every_label_but_the_first() -> None:
    rng = np.random.default_rng(2)
    users = []
    for _ in range(30):
        targets = rng.integers(0, 3, 90)
        logits = np.eye(3)[targets] * 2.0 + rng.normal(0.0, 1.0, (90, 3)) - np.array([0.0, 0.0, 1.5])
        users.append((targets, logits))
    rule = fit_decision_rule(users, ["a", "b", "c"])
    assert rule.offsets.get("c", 0) > 0.5 and "a" not in rule.offsets


@pytest.mark.parametrize("labels", [2, 3])
def test_the_score_is_the_mean_of_accuracy_and_macro_f1_as_the_evaluation_computes_them(labels: int) -> None:
    rng = np.random.default_rng(labels)
    users = [(rng.integers(0, labels, 25), rng.normal(0.0, 1.0, (25, labels))) for _ in range(12)]
    users.append((np.zeros(10, dtype=int), np.tile(np.eye(labels)[:1], (10, 1))))  # one label given and predicted
    rows = decision_rule._PooledRows(users=np.concatenate([np.full(len(t), i) for i, (t, _) in enumerate(users)]),
                                     targets=np.concatenate([t for t, _ in users]),
                                     logits=np.concatenate([z for _, z in users]), count=len(users))
    offsets = np.array([0.0] + [0.3] * (labels - 1))
    expected = []
    for targets, logits in users:
        scores = classification_metrics(targets.tolist(), (logits + offsets).argmax(1).tolist(), labels,
                                        absent_labels_score=False)
        expected.append((scores["accuracy"] + scores["macro_f1"]) / 2)
    assert rows.scores(offsets) == pytest.approx(expected, abs=1e-12)
