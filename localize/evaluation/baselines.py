"""The baselines a personal model must clear, on the same protocol and in the same run.

Each baseline returns, per scored user, its predicted label indexes for that user's test rows. Embedding-based
baselines use the frozen base model's pooled embeddings (the same vectors the ``head`` method sees).

* ``majority``: the user's most frequent train label.
* ``global``: one logistic regression on every user's pooled train labels (users who do not qualify too).
* ``crowd``: the other users' majority label on the same test item. An oracle: it peeks at test labels.
* ``per_user_lr``: logistic regression on the user's own train rows.
* ``per_user_nbsvm``: NB-SVM (Wang & Manning 2012) on the user's word 1-2-grams: binary features scaled by
  the naive-Bayes log-count ratio, then a linear SVM.
* ``stacked_lr``: the per-user regression with the global model's score as one more feature.

Ties (a majority or a crowd vote) go to the label the user gave more often in train, then to label-set order.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from localize.evaluation.data import EvalData, item_key

Embed = Callable[[list[str]], np.ndarray]  # texts -> [n, hidden]


@dataclass
class BaselineOutput:
    predictions: dict[str, np.ndarray]  # user -> label index per test row
    train_seconds: dict[str, float]
    parameters: dict[str, int]  # user -> numbers stored for the user (what an "adapter" of it would hold)


def _preference(data: EvalData, user: str) -> list[int]:
    """Label indexes in the order ties are broken for ``user``: more frequent in the user's train rows first."""
    counts = Counter(data.label_index(data.rows(user, "train")))
    return sorted(range(len(data.labels)), key=lambda k: (-counts[k], k))


def _vote(votes: Counter, preference: list[int]) -> int:
    best = max(votes.values())
    return next(k for k in preference if votes.get(k, 0) == best)


def majority(data: EvalData, embed: Embed | None = None) -> BaselineOutput:
    predictions, seconds = {}, {}
    for user in data.users:
        started = time.perf_counter()
        label = _preference(data, user)[0]
        seconds[user] = time.perf_counter() - started
        predictions[user] = np.full(len(data.rows(user, "test")), label)
    return BaselineOutput(predictions, seconds, {u: 1 for u in data.users})


def crowd(data: EvalData, embed: Embed | None = None) -> BaselineOutput:
    """Other users' majority on the same test item; the user's own majority where nobody else labelled it."""
    by_item: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for row in data.test:
        by_item[item_key(row)].append((row.user, data.labels.index(row.label)))
    predictions = {}
    for user in data.users:
        preference = _preference(data, user)
        guesses = []
        for row in data.rows(user, "test"):
            votes = Counter(label for other, label in by_item[item_key(row)] if other != user)
            guesses.append(_vote(votes, preference) if votes else preference[0])
        predictions[user] = np.array(guesses, dtype=int)
    return BaselineOutput(predictions, {u: 0.0 for u in data.users}, {u: 0 for u in data.users})


def _fit_lr(x: np.ndarray, y: np.ndarray) -> LogisticRegression | int:
    """A fitted regression, or the only class when the user's train rows have one label."""
    if len(set(y.tolist())) < 2:
        return int(y[0])
    return LogisticRegression(max_iter=2000).fit(x, y)


def _predict(model: LogisticRegression | int, x: np.ndarray) -> np.ndarray:
    return np.full(len(x), model) if isinstance(model, int) else model.predict(x)


def _user_xy(data: EvalData, embed: Embed, user: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    rows = data.rows(user, split)
    return embed([r.text for r in rows]), np.array(data.label_index(rows), dtype=int)


def per_user_lr(data: EvalData, embed: Embed) -> BaselineOutput:
    predictions, seconds, parameters = {}, {}, {}
    for user in data.users:
        x, y = _user_xy(data, embed, user, "train")
        started = time.perf_counter()
        model = _fit_lr(x, y)
        seconds[user] = time.perf_counter() - started
        predictions[user] = _predict(model, _user_xy(data, embed, user, "test")[0])
        parameters[user] = 0 if isinstance(model, int) else model.coef_.size + model.intercept_.size
    return BaselineOutput(predictions, seconds, parameters)


def _global_model(data: EvalData, embed: Embed) -> LogisticRegression:
    x = embed([r.text for r in data.train])
    return LogisticRegression(max_iter=2000).fit(x, np.array(data.label_index(data.train), dtype=int))


def _scores(model: LogisticRegression, x: np.ndarray) -> np.ndarray:
    scores = model.decision_function(x)
    return scores[:, None] if scores.ndim == 1 else scores  # [n, 1] for two classes, [n, classes] otherwise


def global_model(data: EvalData, embed: Embed) -> BaselineOutput:
    started = time.perf_counter()
    model = _global_model(data, embed)
    shared = (time.perf_counter() - started) / len(data.users)  # one model, its cost shared by every user
    predictions = {user: model.predict(_user_xy(data, embed, user, "test")[0]) for user in data.users}
    return BaselineOutput(predictions, {u: shared for u in data.users}, {u: 0 for u in data.users})


def stacked_lr(data: EvalData, embed: Embed) -> BaselineOutput:
    model = _global_model(data, embed)
    predictions, seconds, parameters = {}, {}, {}
    for user in data.users:
        x, y = _user_xy(data, embed, user, "train")
        x_test = _user_xy(data, embed, user, "test")[0]
        started = time.perf_counter()
        own = _fit_lr(np.hstack([x, _scores(model, x)]), y)
        seconds[user] = time.perf_counter() - started
        predictions[user] = _predict(own, np.hstack([x_test, _scores(model, x_test)]))
        parameters[user] = 0 if isinstance(own, int) else own.coef_.size + own.intercept_.size
    return BaselineOutput(predictions, seconds, parameters)


class NbSvm:
    """NB-SVM: binary word 1-2-gram features times the naive-Bayes log-count ratio, then a linear SVM (one
    versus the rest for more than two labels)."""

    def __init__(self, alpha: float = 1.0, c: float = 1.0) -> None:
        self.alpha, self.c = alpha, c

    def fit(self, texts: list[str], y: np.ndarray) -> NbSvm:
        self.vectorizer = CountVectorizer(ngram_range=(1, 2), binary=True, lowercase=True,
                                          token_pattern=r"(?u)\b\w+\b|[^\w\s]")
        x = self.vectorizer.fit_transform(texts)
        self.classes = sorted(set(y.tolist()))
        targets = [] if len(self.classes) == 1 else self.classes[1:] if len(self.classes) == 2 else self.classes
        self.models = []
        for target in targets:
            positive = np.asarray(x[y == target].sum(0)).ravel() + self.alpha
            negative = np.asarray(x[y != target].sum(0)).ravel() + self.alpha
            ratio = np.log((positive / positive.sum()) / (negative / negative.sum()))
            svm = LinearSVC(C=self.c, max_iter=10_000).fit(x.multiply(ratio).tocsr(), (y == target).astype(int))
            self.models.append((ratio, svm))
        return self

    def predict(self, texts: list[str]) -> np.ndarray:
        if len(self.classes) == 1:
            return np.full(len(texts), self.classes[0])
        x = self.vectorizer.transform(texts)
        scores = np.stack([svm.decision_function(x.multiply(ratio).tocsr()) for ratio, svm in self.models], axis=1)
        if len(self.classes) == 2:
            return np.where(scores[:, 0] > 0, self.classes[1], self.classes[0])
        return np.array(self.classes)[scores.argmax(1)]

    @property
    def parameters(self) -> int:
        return sum(ratio.size + svm.coef_.size + 1 for ratio, svm in self.models) if len(self.classes) > 1 else 0


def per_user_nbsvm(data: EvalData, embed: Embed | None = None) -> BaselineOutput:
    predictions, seconds, parameters = {}, {}, {}
    for user in data.users:
        train = data.rows(user, "train")
        started = time.perf_counter()
        model = NbSvm().fit([r.text for r in train], np.array(data.label_index(train), dtype=int))
        seconds[user] = time.perf_counter() - started
        predictions[user] = model.predict([r.text for r in data.rows(user, "test")])
        parameters[user] = model.parameters
    return BaselineOutput(predictions, seconds, parameters)


BASELINES: dict[str, tuple[Callable[[EvalData, Embed], BaselineOutput], str]] = {
    "majority": (majority, "the user's most frequent train label"),
    "global": (global_model, "one logistic regression on every user's pooled train labels (frozen embeddings)"),
    "crowd": (crowd, "the other users' majority on the same test item (an oracle: it peeks at test labels)"),
    "per_user_lr": (per_user_lr, "logistic regression on the user's frozen embeddings"),
    "per_user_nbsvm": (per_user_nbsvm, "NB-SVM on the user's word 1-2-grams"),
    "stacked_lr": (stacked_lr, "per-user logistic regression on the embedding plus the global model's score"),
}
