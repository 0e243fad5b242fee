"""The fast evaluation harness: every distinct text is encoded once, every user is trained with the production
:class:`~localize.training.Trainer` and scored through the engine's forward on cached frozen activations.

A *recipe* is a set of training arguments (method, options, task prior or not). With ``init_from_prior`` the
task prior is trained first on every user's pooled train rows, exactly as ``localize train --prior`` does, and
each user's adapter starts from it. Baselines (``localize.evaluation.baselines``) run on the same users.
"""
from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from localize.activations import ActivationCache
from localize.base_model import BaseModel, text_hash
from localize.engine import AdapterWeights
from localize.evaluation.baselines import BASELINES
from localize.evaluation.data import EvalData
from localize.training import Trainer
from localize.training_args import TrainingArguments

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    """A named way to train each user's adapter; ``max_users`` limits an expensive recipe to the first users by id."""

    name: str
    args: TrainingArguments
    description: str = ""
    max_users: int | None = None


@dataclass
class UserResult:
    user: str
    n_train: int
    n_test: int
    accuracy: float
    macro_f1: float
    train_seconds: float
    adapter_bytes: int


@dataclass
class MethodResult:
    name: str
    kind: str  # "recipe" or "baseline"
    description: str
    users: list[UserResult]
    prior_seconds: float | None = None  # one-off cost of the task prior, shared by every user
    # Not serialised: per user, test probabilities [n_test, labels] and validation (probabilities, targets).
    test_probabilities: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    validation: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "users": len(self.users),
            "mean_accuracy": statistics.fmean(u.accuracy for u in self.users),
            "mean_macro_f1": statistics.fmean(u.macro_f1 for u in self.users),
            "train_seconds_per_user": statistics.fmean(u.train_seconds for u in self.users),
            "prior_seconds": self.prior_seconds,
            "adapter_bytes": int(statistics.median(u.adapter_bytes for u in self.users)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "users": [vars(u) for u in self.users]}


def user_metrics(truth: list[int] | np.ndarray, predicted: list[int] | np.ndarray) -> tuple[float, float]:
    """Accuracy and macro-F1 over the labels present in the user's truth or predictions (scikit-learn's default)."""
    return (float(accuracy_score(truth, predicted)),
            float(f1_score(truth, predicted, average="macro", zero_division=0)))


class Harness:
    """Runs recipes and baselines on one data set; encodings, priors and the activation cache are shared."""

    def __init__(self, data: EvalData, base: BaseModel, *, cache: ActivationCache | None = None,
                 progress: Progress | None = None, prior_rows: list | None = None,
                 priors: dict[str, tuple[AdapterWeights, float, Trainer]] | None = None) -> None:
        """``prior_rows``: the pooled rows task priors train on (default: every train row); ``priors``: a cache of
        trained priors to share with another harness that trains them on the same rows."""
        self.data = data
        self.base = base
        self.cache = cache or ActivationCache(max_bytes=4 << 30)
        self.progress = progress or (lambda message: None)
        self.prior_rows = data.train if prior_rows is None else prior_rows
        self._priors: dict[str, tuple[AdapterWeights, float, Trainer]] = {} if priors is None else priors

    # -- encodings ------------------------------------------------------------------------------------------------
    def encode_all(self, saved: Path | None = None, *, write: bool = True) -> float:
        """Pooled frozen embeddings of every distinct text, once; returns the seconds it took. ``saved`` is a
        ``.pt`` file that keeps them between runs (keyed by base model, length limit and text hash); ``write=False``
        only reads it."""
        started = time.perf_counter()
        layer = self.base.dims.num_layers
        texts = sorted({r.text for r in self.data.train} | {r.text for r in self.data.test})
        stamp = (self.base.dims.model_id, self.base.max_seq_length)
        if saved is not None and saved.is_file():
            stored = torch.load(saved, weights_only=True)
            if tuple(stored["stamp"]) == stamp:
                known = {h: i for i, h in enumerate(stored["hashes"])}
                found = [t for t in texts if text_hash(t) in known]
                self.cache.preload(self.base, layer, found, [stored["pooled"][known[text_hash(t)]] for t in found])
        for start in range(0, len(texts), 1024):
            self.cache.frozen_inputs(self.base, texts[start : start + 1024], layer)
            self.progress(f"encoded {min(start + 1024, len(texts))}/{len(texts)} texts")
        if saved is not None and write:
            saved.parent.mkdir(parents=True, exist_ok=True)
            pooled = torch.stack(self.cache.frozen_inputs(self.base, texts, layer))
            torch.save({"stamp": list(stamp), "hashes": [text_hash(t) for t in texts], "pooled": pooled}, saved)
        return time.perf_counter() - started

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = self.cache.frozen_inputs(self.base, texts, self.base.dims.num_layers)
        return torch.stack(rows).numpy() if rows else np.zeros((0, self.base.dims.hidden_size), dtype=np.float32)

    # -- baselines ------------------------------------------------------------------------------------------------
    def run_baseline(self, name: str) -> MethodResult:
        function, description = BASELINES[name]
        output = function(self.data, self.embed)
        users = []
        for user in self.data.users:
            test = self.data.rows(user, "test")
            accuracy, macro_f1 = user_metrics(self.data.label_index(test), output.predictions[user])
            users.append(UserResult(user, len(self.data.rows(user, "train")), len(test), accuracy, macro_f1,
                                    output.train_seconds[user], 4 * output.parameters[user]))
        return MethodResult(name, "baseline", description, users)

    # -- recipes --------------------------------------------------------------------------------------------------
    def prior(self, args: TrainingArguments) -> tuple[AdapterWeights, float]:
        """The task prior for ``args``: the same method trained on every user's pooled train rows (cached), and the
        seconds it cost. Several priors side by side start from the lone prior of their first seed when it has
        trained (as the recipe choice does); their seconds still count it, as training them alone would."""
        prior_args = args.for_prior()
        key = self._prior_key(prior_args)
        if key not in self._priors:
            first = None
            if args.prior_members > 1:
                first = self._priors.get(self._prior_key(dataclasses.replace(args, prior_members=1).for_prior()))
            rows = self.prior_rows
            self.progress(f"training the task prior ({prior_args.method}) on {len(rows)} pooled rows"
                          + (", its first member trained already" if first else ""))
            started = time.perf_counter()
            trainer = Trainer(self.base, prior_args, [r.text for r in rows], [r.label for r in rows],
                              self.data.labels, cache=self.cache, annotators=[r.user for r in rows],
                              trained_members=[first[2]] if first else (),
                              progress=lambda fraction, message: self.progress(f"task prior: {message}"))
            weights = trainer.train()
            self._priors[key] = (weights, time.perf_counter() - started + (first[1] if first else 0.0), trainer)
        weights, seconds, _ = self._priors[key]
        return weights, seconds

    @staticmethod
    def _prior_key(prior_args: TrainingArguments) -> str:
        return repr({**prior_args.to_dict(), "init_from_prior": False, "train_scope": "all"})

    def recipe_users(self, recipe: Recipe) -> list[str]:
        return self.data.users[: recipe.max_users] if recipe.max_users else self.data.users

    def run_recipe(self, recipe: Recipe) -> MethodResult:
        """Trains and scores every user of ``recipe`` (the task prior first, when the recipe starts from one)."""
        args = recipe.args
        init, prior_seconds = self.prior(args) if args.init_from_prior else (None, None)
        users, test_probabilities, validation = [], {}, {}
        names = self.recipe_users(recipe)
        if init is not None and args.train_scope == "head" and init.params:
            # As whole-task training does before its users' jobs: every user's texts encoded with the prior once, in
            # large batches sorted by length, so each user's trainer finds its encodings (the same numbers) cached.
            texts = sorted({r.text for user in names for r in self.data.rows(user, "train")})
            self.progress(f"{recipe.name}: encoding the users' {len(texts):,} texts with the task prior")
            self.cache.encoded(self.base, init, texts)
        for index, user in enumerate(names):
            train = self.data.rows(user, "train")
            test = self.data.rows(user, "test")
            started = time.perf_counter()
            trainer = Trainer(self.base, args, [r.text for r in train], [r.label for r in train], self.data.labels,
                              init=init, cache=self.cache)
            weights = trainer.train()
            seconds = time.perf_counter() - started
            probabilities = trainer.predict_proba([r.text for r in test]).numpy()
            accuracy, macro_f1 = user_metrics(self.data.label_index(test), probabilities.argmax(1))
            users.append(UserResult(user, len(train), len(test), accuracy, macro_f1, seconds, weights.nbytes))
            test_probabilities[user] = probabilities
            if trainer.val_split is not None:  # the validated model's, before a refit trained on these rows
                validation[user] = (trainer.val_probabilities.numpy(), trainer.val_split.targets.numpy())
            if (index + 1) % 16 == 0 or index + 1 == len(names):
                self.progress(f"{recipe.name}: {index + 1}/{len(names)} users")
        return MethodResult(recipe.name, "recipe", recipe.description, users, prior_seconds,
                            test_probabilities, validation)
