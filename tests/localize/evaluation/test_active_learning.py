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


def test_the_product_encoder_mode_trains_a_task_prior_per_fold_of_users_without_their_labels(
        base, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import torch

    from localize import training

    data, _ = _data(train=20, test=10)
    trained: list[set[str]] = []
    heads = []

    class Recording(training.Trainer):
        def __init__(self, *args, annotators=None, **kwargs):  # noqa: ANN002, ANN003
            trained.append(set(annotators))
            super().__init__(*args, annotators=annotators, **kwargs)

        def train(self):  # noqa: ANN202
            weights = super().train()
            heads.append(weights.head)
            return weights

    monkeypatch.setattr(training, "Trainer", Recording)
    simulator_of = active_learning.task_prior_simulators(data, base, ["u0", "u1", "u2"], folds=2)
    assert trained == [{"u1"}, {"u0", "u2"}]  # each prior left out its fold's users: u0 and u2, then u1
    assert simulator_of["u0"] is simulator_of["u2"] and simulator_of["u1"] is not simulator_of["u0"]
    for user, prior in (("u0", 0), ("u1", 1)):
        center = simulator_of[user].prior_without(user)
        assert torch.equal(center["weight"], heads[prior]["weight"].float())
    # The heads read the prior's encodings, not the frozen base's.
    frozen = base.encode(["train text 0"]).numpy()[0]
    encoded = simulator_of["u0"].vectors[simulator_of["u0"].row_of["train text 0"]].numpy()
    assert encoded.shape == frozen.shape and not np.allclose(encoded, frozen, atol=1e-4)

    curves = simulate(data, _encoder({}), sizes=(10, 20), task_prior_base=base, prior_folds=2)
    assert curves.encoder == "task prior" and curves.users == ["u0", "u1", "u2"] and len(trained) == 4


def test_priors_of_the_product_encoder_mode_keep_most_of_the_task_with_as_few_folds_as_that_allows() -> None:
    data, _ = _data(users=8, train=20)  # every user holds an eighth of the train rows
    users = data.users
    assert active_learning.folds_for_priors(data, users[:2]) == 1  # a prior without 2 of 8 users keeps 3/4
    assert active_learning.folds_for_priors(data, users) == 4  # all 8 simulated: folds of 2 users keep 3/4
    assert active_learning.folds_for_priors(data, users, share=0.9) == 8  # not even one user out keeps 0.9


@pytest.mark.parametrize("option", ["--prior-folds", "--prior-last-epoch"])
def test_a_prior_option_below_one_is_refused_by_name_before_anything_runs(option, tmp_path, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit):
        active_learning.main(["--data", str(tmp_path / "absent"), "--encoder", "prior", option, "0",
                              "--out", str(tmp_path / "out")])
    assert f"{option} must be at least 1, not 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_each_data_set_can_stop_its_priors_at_its_own_epoch_and_bad_values_are_named(tmp_path, capsys) -> None:  # noqa: ANN001
    epoch_for = active_learning.prior_epochs(["2", "hs_brexit=4"], ["md_agreement", "hs_brexit"])
    assert (epoch_for("md_agreement"), epoch_for("hs_brexit")) == (2, 4)
    assert active_learning.prior_epochs([], ["md_agreement"])("md_agreement") is None  # on validation loss
    assert active_learning.prior_epochs(["hs_brexit=4"], ["md_agreement", "hs_brexit"])("md_agreement") is None
    for value, message in (("convabuse=2", "'convabuse' is not the name of a --data folder (md_agreement)"),
                           ("two", "'two' is not a whole number of epochs"), ("md_agreement=-1", "not -1")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            active_learning.prior_epochs([value], ["md_agreement"])
    with pytest.raises(SystemExit):
        active_learning.main(["--data", str(tmp_path / "md_agreement"), "--encoder", "prior",
                              "--prior-last-epoch", "other=3", "--out", str(tmp_path / "out")])
    assert "'other' is not the name of a --data folder (md_agreement)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
