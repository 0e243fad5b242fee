"""The active-learning simulation: users' labels revealed in the queue's order or at random, heads refitted every
step, scored on each user's test rows; priors never see the simulated user's labels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from localize.evaluation import active_learning
from localize.evaluation.active_learning import Curves, simulate
from localize.evaluation.data import EvalData
from localize.labels_io import LabelRow


def _data(users: int = 3, train: int = 60, test: int = 30) -> tuple[EvalData, dict[str, np.ndarray]]:
    """Texts are points in 8 dimensions; a user's label is the sign of one direction, with a rare positive class."""
    rng = np.random.default_rng(0)
    vectors, train_rows, test_rows = {}, [], []
    line = 0
    for split, count, rows in (("train", train, train_rows), ("test", test, test_rows)):
        for i in range(count):
            text = f"{split} text {i}"
            vectors[text] = rng.normal(size=8)
            for u in range(users):
                line += 1
                label = "rare" if vectors[text][0] + 0.3 * u > 1.0 else "common"
                rows.append(LabelRow(line=line, user=f"u{u}", text=text, label=label, item=text, split=split))
    data = EvalData(name="points", train=train_rows, test=test_rows, labels=["common", "rare"],
                    users=[f"u{u}" for u in range(users)])
    return data, vectors


def _encoder(vectors: dict[str, np.ndarray]):  # noqa: ANN202
    return lambda texts: np.stack([vectors[t] for t in texts]).astype(np.float32)


def test_curves_cover_every_size_for_both_orders_and_are_deterministic() -> None:
    data, vectors = _data()
    first = simulate(data, _encoder(vectors), sizes=(10, 20, 30))
    again = simulate(data, _encoder(vectors), sizes=(10, 20, 30))
    assert first.users == ["u0", "u1", "u2"] and first.sizes == [10, 20, 30] and first.eligible == 3
    for order in ("active", "random"):
        assert len(first.macro_f1[order]) == 3 and all(0 <= v <= 1 for v in first.macro_f1[order])
    assert first.macro_f1 == again.macro_f1
    # More labels help on this clean task, whatever the order.
    assert first.macro_f1["random"][-1] > first.macro_f1["random"][0]


def test_users_with_too_few_train_rows_sit_out_and_the_user_cap_keeps_the_first() -> None:
    data, vectors = _data(train=25)
    assert simulate(data, _encoder(vectors), sizes=(10, 20)).users == ["u0", "u1", "u2"]
    capped = simulate(data, _encoder(vectors), sizes=(10, 20), limit_users=2)
    assert capped.users == ["u0", "u1"] and capped.eligible == 3
    with pytest.raises(ValueError):  # no user has 30 train rows
        simulate(data, _encoder(vectors), sizes=(10, 30))


def test_the_prior_is_fitted_without_the_simulated_users_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    data, vectors = _data()
    fitted_rows = []
    original = active_learning._Simulator._fit

    def recording(self, x, y, center):  # noqa: ANN001, ANN202
        fitted_rows.append(len(y))
        return original(self, x, y, center)

    monkeypatch.setattr(active_learning._Simulator, "_fit", recording)
    simulator = active_learning._Simulator(data, _encoder(vectors), strength=10.0, weighting="sqrt")
    simulator.prior_without("u1")
    assert fitted_rows == [len([r for r in data.train if r.user != "u1"])]


def test_labels_to_reach_and_the_report_round_trip(tmp_path) -> None:  # noqa: ANN001
    curves = Curves(data_set="points", users=["a"], sizes=[10, 20, 30],
                    macro_f1={"active": [0.5, 0.7, 0.8], "random": [0.4, 0.6, 0.7]},
                    accuracy={"active": [0.6, 0.8, 0.9], "random": [0.5, 0.7, 0.8]}, eligible=1)
    assert curves.labels_to_reach("active", 0.7) == 20
    assert curves.labels_to_reach("random", 0.9) is None
    active_learning.write_report([curves], tmp_path, "python -m localize.evaluation.active_learning")
    saved = json.loads((tmp_path / "active_learning.json").read_text())
    assert saved[0]["summary"]["active_labels_to_reach_random_at_largest"] == 20
    assert "| points | 1 | 0.700 | 0.800 | 20 |" in (tmp_path / "active_learning.md").read_text()
    assert (tmp_path / "active_learning.png").stat().st_size > 0
    active_learning.main(["--render-from", str(tmp_path / "active_learning.json"), "--out", str(tmp_path / "again")])
    assert (tmp_path / "again" / "active_learning.md").read_text().count("| points |") == 1


def test_both_orders_are_averaged_over_the_same_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    data, vectors = _data()
    runs: list[tuple[str, str, int]] = []
    original = active_learning._Simulator.curve

    def recording(self, user, sizes, order, seed, prior, queue_options=None):  # noqa: ANN001, ANN202
        runs.append((user, order, seed))
        return original(self, user, sizes, order, seed, prior, queue_options)

    monkeypatch.setattr(active_learning._Simulator, "curve", recording)
    simulate(data, _encoder(vectors), sizes=(10, 20), limit_users=1)
    assert sorted(runs) == sorted(("u0", order, seed) for order in ("active", "random")
                                  for seed in active_learning.RANDOM_SEEDS)
