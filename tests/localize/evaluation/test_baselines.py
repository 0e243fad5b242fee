"""Baselines on a hand-checkable data set: three users, four test items."""
from __future__ import annotations

import numpy as np
import pytest

from localize.evaluation.baselines import BASELINES, NbSvm, crowd, majority, per_user_lr, per_user_nbsvm, stacked_lr
from localize.evaluation.data import EvalData
from localize.evaluation.harness import user_metrics
from localize.labels_io import LabelRow


def _row(user: str, item: str, text: str, label: str, split: str) -> LabelRow:
    return LabelRow(line=0, user=user, text=text, label=label, item=item, split=split)


def _words(n: int, word: str) -> list[str]:
    return [f"{word} thing number {i}" for i in range(n)]


@pytest.fixture
def data() -> EvalData:
    """``ann`` calls "good ..." texts yes, ``bob`` and ``cat`` call everything the opposite of ``ann``.

    Train: ann 3 yes + 2 no (majority yes); bob and cat 2 yes + 3 no. Test items t1..t4:
    t1 "good": ann yes, bob no, cat no  -> crowd for ann: no (wrong), for bob: no/yes tie -> bob's majority no
    t2 "bad":  ann no,  bob yes, cat yes -> crowd for ann: yes (wrong)
    t3 "good": ann yes, bob no          -> crowd for ann: no (wrong); for bob: ann's yes (wrong)
    t4 "good": ann yes only             -> crowd for ann: nobody else, ann's own majority yes (right)
    """
    train = []
    for i, text in enumerate(_words(3, "good") + _words(2, "bad")):
        yes = text.startswith("good")
        train.append(_row("ann", f"a{i}", text, "yes" if yes else "no", "train"))
        for other in ("bob", "cat"):
            train.append(_row(other, f"a{i}", text, "no" if yes else "yes", "train"))
    train = [r for r in train if not (r.user != "ann" and r.item == "a0")]  # bob, cat: 2 yes + 2 no ...
    train += [_row(u, "a9", "good extra thing", "no", "train") for u in ("bob", "cat")]  # ... + 1 no
    test = [
        _row("ann", "t1", "good test one", "yes", "test"), _row("bob", "t1", "good test one", "no", "test"),
        _row("cat", "t1", "good test one", "no", "test"),
        _row("ann", "t2", "bad test two", "no", "test"), _row("bob", "t2", "bad test two", "yes", "test"),
        _row("cat", "t2", "bad test two", "yes", "test"),
        _row("ann", "t3", "good test three", "yes", "test"), _row("bob", "t3", "good test three", "no", "test"),
        _row("ann", "t4", "good test four", "yes", "test"),
    ]
    return EvalData(name="tiny", train=train, test=test, labels=["no", "yes"], users=["ann", "bob"])


def fake_embed(texts: list[str]) -> np.ndarray:
    """A two-dimensional "embedding" that separates good from bad texts perfectly."""
    return np.array([[1.0, 0.0] if t.startswith("good") else [0.0, 1.0] for t in texts])


def test_majority_predicts_each_users_most_frequent_train_label(data: EvalData) -> None:
    out = majority(data)
    assert out.predictions["ann"].tolist() == [1, 1, 1, 1]  # ann: 3 yes, 2 no
    assert out.predictions["bob"].tolist() == [0, 0, 0]  # bob: 2 yes, 3 no
    assert user_metrics([1, 0, 1, 1], out.predictions["ann"]) == pytest.approx((0.75, (0.0 + 6 / 7) / 2))


def test_crowd_is_the_other_users_majority_on_the_same_item(data: EvalData) -> None:
    out = crowd(data)
    # ann: t1 no (bob, cat), t2 yes (bob, cat), t3 no (bob), t4 nobody else -> ann's own majority yes
    assert out.predictions["ann"].tolist() == [0, 1, 0, 1]
    # bob: t1 ann yes vs cat no is a tie -> bob's most frequent label no; t2 ann no vs cat yes -> tie -> no;
    # t3 only ann: yes
    assert out.predictions["bob"].tolist() == [0, 0, 1]
    assert user_metrics([1, 0, 1, 1], out.predictions["ann"])[0] == pytest.approx(0.25)
    assert user_metrics([0, 1, 0], out.predictions["bob"])[0] == pytest.approx(1 / 3)


def test_embedding_baselines_learn_each_users_own_truth(data: EvalData) -> None:
    for function in (per_user_lr, stacked_lr):
        out = function(data, fake_embed)
        assert out.predictions["ann"].tolist() == [1, 0, 1, 1], function.__name__
        assert out.predictions["bob"].tolist() == [0, 1, 0], function.__name__
        assert out.parameters["ann"] > 0 and out.train_seconds["ann"] >= 0


def test_global_model_learns_the_pooled_majority_and_misses_the_minority_user(data: EvalData) -> None:
    out = BASELINES["global"][0](data, fake_embed)
    assert out.predictions["bob"].tolist() == [0, 1, 0]  # bob and cat outvote ann in the pooled rows
    assert out.predictions["ann"].tolist() == [0, 1, 0, 0]


def test_nbsvm_uses_word_ngrams(data: EvalData) -> None:
    out = per_user_nbsvm(data)
    assert out.predictions["ann"].tolist() == [1, 0, 1, 1]
    assert out.predictions["bob"].tolist() == [0, 1, 0]


def test_nbsvm_with_a_single_train_label_predicts_it() -> None:
    model = NbSvm().fit(["a b", "a c"], np.array([1, 1]))
    assert model.predict(["anything"]).tolist() == [1] and model.parameters == 0


def test_nbsvm_handles_more_than_two_labels() -> None:
    texts = [f"{w} {i}" for w in ("red", "green", "blue") for i in range(4)]
    y = np.repeat([0, 1, 2], 4)
    assert NbSvm().fit(texts, y).predict(["green 9", "blue 7", "red 1"]).tolist() == [1, 2, 0]
