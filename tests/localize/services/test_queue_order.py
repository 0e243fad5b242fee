"""The queue's ordering rule on plain probabilities: uncertainty, disagreement with the prior, random picks."""
from __future__ import annotations

import numpy as np
import pytest

from localize.errors import ValidationError
from localize.services.queue import disagreement, margin_uncertainty, order_queue


def test_uncertainty_is_one_minus_the_margin_and_disagreement_the_total_variation():
    p = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    assert margin_uncertainty(p) == pytest.approx([1.0, 0.2, 0.8])
    assert disagreement(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == pytest.approx([1.0])
    assert disagreement(p, p) == pytest.approx([0, 0, 0])


def test_without_random_picks_the_least_certain_come_first():
    user = np.array([[0.99, 0.01], [0.55, 0.45], [0.8, 0.2], [0.5, 0.5]])
    picks = order_queue(user_probabilities=user, prior_probabilities=None, n_candidates=4, limit=4, random_share=0)
    assert [p.index for p in picks] == [3, 1, 2, 0] and {p.reason for p in picks} == {"active"}


def test_disagreement_with_the_prior_can_outrank_uncertainty():
    # Text 0: the user's model is sure, the prior sure of the opposite; text 1: both mildly unsure and agreeing.
    user = np.array([[0.95, 0.05], [0.6, 0.4]])
    prior = np.array([[0.05, 0.95], [0.6, 0.4]])
    ranked = order_queue(user_probabilities=user, prior_probabilities=prior, n_candidates=2, limit=2, random_share=0)
    assert [p.index for p in ranked] == [0, 1]
    assert ranked[0].disagreement == pytest.approx(0.9) and ranked[1].disagreement == pytest.approx(0.0)
    only_uncertainty = order_queue(user_probabilities=user, prior_probabilities=prior, n_candidates=2, limit=2,
                                   random_share=0, disagreement_weight=0)
    assert [p.index for p in only_uncertainty] == [1, 0]


def test_random_share_spreads_random_picks_and_never_repeats_a_text():
    rng = np.random.default_rng(0)
    user = rng.dirichlet([1, 1, 1], size=200)
    picks = order_queue(user_probabilities=user, prior_probabilities=None, n_candidates=200, limit=50,
                        random_share=0.2, seed=3)
    reasons = [p.reason for p in picks]
    assert reasons.count("random") == 10 and reasons[4] == reasons[9] == "random"
    assert len({p.index for p in picks}) == 50
    again = order_queue(user_probabilities=user, prior_probabilities=None, n_candidates=200, limit=50,
                        random_share=0.2, seed=3)
    assert [p.index for p in again] == [p.index for p in picks]  # deterministic for a seed


def test_without_an_adapter_the_prior_orders_and_without_either_the_order_is_random():
    prior = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
    picks = order_queue(user_probabilities=None, prior_probabilities=prior, n_candidates=3, limit=3, random_share=0)
    assert [p.index for p in picks] == [1, 2, 0] and {p.reason for p in picks} == {"prior"}
    blind = order_queue(user_probabilities=None, prior_probabilities=None, n_candidates=5, limit=5)
    assert sorted(p.index for p in blind) == [0, 1, 2, 3, 4] and {p.reason for p in blind} == {"random"}


@pytest.mark.parametrize(("weights", "message"), [
    ({"random_share": 1.5}, "random_share=1.5 must be in"),
    ({"uncertainty_weight": -1}, "uncertainty_weight=-1 must be a number >= 0"),
    ({"disagreement_weight": float("nan")}, "disagreement_weight=nan"),
])
def test_bad_weights_are_named(weights, message):
    with pytest.raises(ValidationError, match=message):
        order_queue(user_probabilities=None, prior_probabilities=None, n_candidates=1, limit=1, **weights)
