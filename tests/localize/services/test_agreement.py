"""Agreement figures: Krippendorff's alpha against values computed by hand and published, and the crowd views."""
from __future__ import annotations

import pytest

from localize.services.agreement import crowd_majority, krippendorff_alpha_nominal


def test_alpha_of_a_small_table_computed_by_hand():
    # Two coders, four texts: a/a, a/b, b/b, b/b. Coincidences (each pair counted both ways, weight 1/(m-1) = 1):
    # o_aa = 2, o_ab = o_ba = 1, o_bb = 4; n_a = 3, n_b = 5, n = 8.
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (n_a n_b + n_b n_a) = 1 - 7 * 2 / 30 = 16 / 30.
    units = {1: ["a", "a"], 2: ["a", "b"], 3: ["b", "b"], 4: ["b", "b"]}
    assert krippendorff_alpha_nominal(units) == pytest.approx(16 / 30)


def test_alpha_of_krippendorffs_published_example_with_missing_values():
    # Krippendorff, "Computing Krippendorff's alpha-reliability" (2011): 4 coders, 12 units, some values missing;
    # nominal alpha = 0.743.
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = {unit: [row[unit] for row in coders if row[unit] is not None] for unit in range(12)}
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_alpha_edge_cases():
    assert krippendorff_alpha_nominal({1: ["a", "a"], 2: ["b", "b"]}) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal({1: ["a", "b"], 2: ["b", "a"]}) < 0  # systematic disagreement
    assert krippendorff_alpha_nominal({1: ["a"], 2: ["b"]}) is None  # nothing pairable
    assert krippendorff_alpha_nominal({1: ["a", "a"], 2: ["a", "a"]}) is None  # one value: undefined


def test_crowd_majority_leaves_the_user_out_and_has_no_winner_on_a_tie():
    labels = {1: "work", 2: "personal", 3: "personal", 4: "work"}
    assert crowd_majority(labels, leave_out=1) == "personal"
    assert crowd_majority(labels, leave_out=None) is None
    assert crowd_majority({1: "work"}, leave_out=1) is None
