"""Training one user's adapter on that user's labels (after SetFit's small trainer).

Phases are named methods: :meth:`Trainer.prepare` splits off validation rows and computes the frozen
activations once, :meth:`Trainer.fit` trains (class weighting; early stopping on validation, or a MAP solve for a
linear head), :meth:`Trainer.evaluate` scores any labelled texts, and :meth:`Trainer.result` hands back the adapter.
The adapter being trained (its tensors, forward and loss) is a :class:`~localize.trainable_adapter.TrainableAdapter`,
and epochs of gradient steps are an :class:`~localize.epoch_loop.EpochLoop`'s (several averaged MLP heads': one
:class:`~localize.ensemble_loop.HeadEnsembleLoop`'s); the trainer holds what surrounds them: the rows and their
validation split, class weights, the MAP head fit and calibration.

The default recipe (reports/accuracy.md) has two levels. The task prior tunes the base's top four layers (LoRA on
their six linear maps) and a head on every user's pooled labels: each text's label shares, and each annotator's own
labels through that annotator's head, so that every annotator's view is a linear map of its encoding. Each user
then fits only a linear head on the prior's encoding (``train_scope="head"``), by maximum a posteriori: their
labels' cross-entropy plus a pull toward the prior's head. The head references the prior instead of copying it, so
a user costs a head's bytes and the engine runs the tuned layers once per text for every user of the task.
Validation rows are chosen by text (``validation_split="by_text"``), the same texts for the prior and every user,
so no user is validated on a text the prior learnt.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import torch

from localize.activations import ActivationCache, get_activation_cache
from localize.base_model import BaseModel
from localize.calibration import calibrate_on_validation, calibration_record, spread_evenly
from localize.determinism import deterministic_kernels
from localize.engine import AdapterWeights
from localize.ensemble_loop import HeadEnsembleLoop
from localize.epoch_loop import EpochLoop, ProgressCallback, describe_scores
from localize.errors import ValidationError
from localize.head_ensemble import member_arguments, serve_as_one
from localize.label_metrics import classification_metrics
from localize.map_head import class_weights_of, fit_map_head
from localize.stack_training import StackTraining
from localize.trainable_adapter import TrainableAdapter
from localize.training_args import TrainingArguments
from localize.training_rows import (
    Split,
    annotations_by_text,
    concat_splits,
    epoch_batches,
    loss_targets,
    merge_duplicates,
    validation_indexes,
)

logger = logging.getLogger(__name__)


def _adapter_attribute(name: str) -> property:
    """The trainer's adapter's attribute ``name``, read and replaced through the trainer."""
    return property(lambda self: getattr(self.adapter, name), lambda self, value: setattr(self.adapter, name, value))


class Trainer(StackTraining):
    """Trains one adapter: ``prepare()``, ``fit()``, ``evaluate()``, ``result()`` (``train()`` runs them all)."""

    def __init__(
        self,
        base: BaseModel,
        args: TrainingArguments,
        texts: list[str],
        labels: list[str],
        label_set: list[str],
        *,
        init: AdapterWeights | None = None,
        cache: ActivationCache | None = None,
        progress: ProgressCallback | None = None,
        annotators: list[str] | None = None,
        trained_members: Sequence[Trainer] = (),
    ) -> None:
        """``annotators``: who gave each label (the pooled rows of a task prior), for ``annotator_loss_weight``.
        ``trained_members``: a stack's first members, already trained on these rows as it would train them (their
        trainers), so they are not trained again."""
        _check_inputs(args, texts, labels, label_set, annotators)
        self._rows = (list(texts), list(labels), None if annotators is None else list(annotators))  # for members
        self.base = base
        self.args = args
        self.texts = texts
        self.label_set = list(label_set)
        self.targets = [self.label_set.index(label) for label in labels]
        self.soft_targets: list[list[float]] | None = None
        # Per text, (annotator index, label index) of every label it was given, when several annotators gave them.
        self.annotations: dict[str, list[tuple[int, int]]] | None = None
        self.num_annotators = 0
        if annotators is not None and args.annotator_loss_weight > 0 and len(set(annotators)) > 1:
            self.annotations, self.num_annotators = annotations_by_text(texts, annotators, self.targets)
        if args.merge_duplicate_texts and len(set(texts)) < len(texts):
            self.texts, self.targets, self.soft_targets = merge_duplicates(texts, self.targets, len(self.label_set))
        self.cache = cache or get_activation_cache()
        self.progress = progress or (lambda fraction, message: None)
        self.adapter = TrainableAdapter(base, args, self.label_set, annotations=self.annotations,
                                        num_annotators=self.num_annotators)
        self.init = init
        self.trained_members = list(trained_members)
        self.history: list[dict[str, float]] = []
        self.metrics: dict[str, Any] = {}
        self.temperature, self.uniform_share = 1.0, 0.0  # fitted on validation rows by fit()
        self.decision_offsets = torch.tensor([float((args.decision_offsets or {}).get(label, 0.0))
                                              for label in self.label_set]) if args.decision_offsets else None
        self._prepared = False

    # What callers read (and, for the head, replace) on the trainer: the adapter's tensors and the prior it reads.
    params = _adapter_attribute("params")
    head = _adapter_attribute("head")
    annotator_offsets = _adapter_attribute("annotator_offsets")
    encoder = _adapter_attribute("encoder")

    # -- phases ---------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.adapter.start(self.init)
        train_idx, val_idx = self._split()
        self.train_split = self._make_split(train_idx)
        self.val_split = self._make_split(val_idx) if val_idx else None
        self._prepared = True

    def fit(self) -> None:
        if not self._prepared:
            self.prepare()
        # Dropout draws from torch's global generator: seed it, inside a fork so callers' streams are untouched.
        devices = [self.base.device] if self.base.device.type == "cuda" else []
        # Ordered CPU kernels too: the same labels and seed give the same adapter on every run (localize.determinism).
        with torch.random.fork_rng(devices=devices), deterministic_kernels(self.base.device):
            torch.manual_seed(self.args.seed)
            self._fit()

    def _fit(self) -> None:
        if self._fits_members():
            return
        started = time.perf_counter()
        self._loop: EpochLoop | None = None  # one head's (or one adapter's) epochs
        self._ensemble: HeadEnsembleLoop | None = None  # several heads: their loop, members and best epochs
        class_weights = self._class_weights()
        map_head = self._fits_map_head()
        if map_head:
            # Toward the prior's head; without one, toward zero (plain L2-regularised logistic regression).
            center = {k: v.detach().clone() if self.adapter.from_prior else torch.zeros_like(v)
                      for k, v in self.head.items()}
            self._fit_map_head(self.train_split, center, class_weights)
            best_epoch = None
        else:
            best_epoch = self._fit_by_epochs(class_weights)
        best = self.history[best_epoch - 1] if best_epoch is not None else None
        if self._ensemble is not None:
            best = None  # several heads, each stopped at its own epoch, served as one: scored below as served
        if best is not None and self.annotations is not None:
            # A task prior: its training figure is its best epoch's running loss. Scoring its thousands of rows
            # again would cost half an epoch (a minute on MD-Agreement) for a figure nobody acts on.
            train_scores = {"train_loss": best["train_loss"]}
        else:
            train_scores = {f"train_{k}": v for k, v in self._score(self.train_split, class_weights).items()}
        if map_head:  # one record, so a MAP fit reads like a one-epoch run
            self.history.append({"epoch": 1, "train_loss": train_scores["train_loss"]})
        self.metrics = {
            **train_scores,
            "epochs": len(self.history),
            "best_epoch": best_epoch,
            "train_rows": len(self.train_split.texts),
            "val_rows": 0 if self.val_split is None else len(self.val_split.texts),
            "train_seconds": time.perf_counter() - started,
        }
        if self.annotations is not None:
            self.metrics["annotators"] = self.num_annotators
        if self._ensemble is not None:
            self.metrics["ensemble_best_epochs"] = list(self._ensemble.best_epochs)
        if self.val_split is not None:
            if best is not None:  # the restored best epoch's parameters: its validation figures stand
                scores = {k: best[k] for k in ("val_loss", "val_accuracy", "val_macro_f1")}
            else:
                val = self._score(self.val_split, class_weights)
                scores = {"val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"]}
            self.metrics.update(scores)
            if map_head:
                self.history[-1].update(scores)
        refit = self.args.refit_on_all if self.args.refit_on_all is not None else map_head
        self._calibrate_on_validation()
        if refit and self.val_split is not None and (map_head or best_epoch is not None):
            # The held-out labels have measured the model (and chosen its epoch count); now they train too (they
            # are a sixth of a small user's labels). The validation figures above stay those of the model that
            # was validated.
            both = concat_splits(self.train_split, self.val_split)
            if map_head:
                self._fit_map_head(both, center, self._class_weights(both))
            elif self._ensemble is None:
                self._loop.refit(both, best_epoch, self._class_weights(both))
                self.metrics["refit_epochs"] = best_epoch
            else:
                self._ensemble.refit(both, self._ensemble.best_epochs, self._class_weights(both))
                serve_as_one(self.adapter, self._ensemble.members)
                self.metrics["refit_epochs"] = list(self._ensemble.best_epochs)
            self.metrics.update({"refit_rows": len(both.texts), "train_seconds": time.perf_counter() - started})
        self.adapter.fold_into_head(self.temperature, self.decision_offsets)
        self.progress(1.0, "done: " + describe_scores(self.metrics))

    def _fit_by_epochs(self, class_weights: torch.Tensor | None) -> int | None:
        """AdamW epochs with early stopping; returns the best epoch. With ``head_ensemble`` K, K heads train from
        seeds ``seed`` to ``seed + K - 1`` in one loop (each as it would alone, to rounding: the first is the single
        head of its seed) and are served as one; the first head's best epoch is returned."""
        if self.args.head_ensemble == 1:
            self._loop = EpochLoop(self.adapter, self.args, batches=self._batches, score=self._score,
                                   progress=self.progress, history=self.history)
            return self._loop.train(self.train_split, self.val_split, class_weights)
        members = []
        for index in range(self.args.head_ensemble):
            member = TrainableAdapter(self.base, member_arguments(self.args, index), self.label_set)
            member.start(self.init)
            members.append(member)
        self._ensemble = HeadEnsembleLoop(members, batches=self._batches, metrics=classification_metrics,
                                          progress=self.progress, history=self.history)
        best_epochs = self._ensemble.train(self.train_split, self.val_split, class_weights)
        serve_as_one(self.adapter, members)
        return best_epochs[0]

    def first_head_logits(self, texts: list[str]) -> tuple[torch.Tensor, float]:
        """What the first of several averaged heads would serve alone on ``texts``: its logits and uniform share,
        calibrated on the same validation rows. That head is the one ``head_ensemble=1`` trains with the same seed
        (to floating-point rounding), so whole-task training scores one head and the average from one fit."""
        if self._ensemble is None:
            raise ValueError("first_head_logits needs a trainer of several heads (head_ensemble > 1)")
        if "refit_rows" in self.metrics:  # the lone head is calibrated before its refit; a refit head cannot be
            raise ValueError("first_head_logits needs heads that were not refitted on their validation rows")
        member = self._ensemble.members[0]
        temperature, share = 1.0, 0.0
        if self.val_split is not None:
            temperature, share, _ = calibrate_on_validation(
                member.all_logits(self.val_split).float(), loss_targets(self.val_split, slice(None)),
                fit=self.args.calibrate, temperature_scale=self.args.temperature_scale,
                added_share=self.args.added_uniform_share, offsets=self.decision_offsets)
        logits = member.all_logits(self._make_split_from(texts, [0] * len(texts))).float().cpu() / temperature
        if self.decision_offsets is not None:
            logits = logits + self.decision_offsets
        return logits, share

    def _calibrate_on_validation(self, logits: torch.Tensor | None = None) -> None:
        """What the validated model said on its validation rows (``logits``, else computed), before they train
        too: a temperature and a uniform share fitted on them (``calibrate``) and the record of calibrated
        confidences that abstention thresholds are read from."""
        self.temperature, self.uniform_share, self.val_probabilities = 1.0, 0.0, None
        if self.val_split is None:
            return
        if logits is None:
            logits = self._all_logits(self.val_split).float()
        self.temperature, self.uniform_share, self.val_probabilities = calibrate_on_validation(
            logits, loss_targets(self.val_split, slice(None)),
            fit=self.args.calibrate, temperature_scale=self.args.temperature_scale,
            added_share=self.args.added_uniform_share, offsets=self.decision_offsets)
        self.metrics["temperature"] = self.temperature
        if self.uniform_share:  # read by the engine (AdapterWeights.uniform_share)
            self.metrics["uniform_share"] = self.uniform_share
        self.metrics["calibration"] = calibration_record(self.val_probabilities.numpy(),
                                                         self.val_split.targets.numpy())

    def _fits_map_head(self) -> bool:
        """Whether this fit is a linear head on pooled vectors (the task prior's encoding or the frozen base)
        fitted by :func:`fit_map_head`."""
        method = self.adapter.method
        return (self.args.head_fit == "map" and self.args.train_scope == "head" and not self.params
                and method.start_layer == self.base.dims.num_layers and not method.embeds_inputs)

    def _fit_map_head(self, split: Split, center: dict[str, torch.Tensor], class_weights: torch.Tensor | None) -> None:
        fit_map_head(self.head, split, center, strength=self.args.head_prior_strength, class_weights=class_weights,
                     device=self.base.device)

    def evaluate(self, texts: list[str], labels: list[str]) -> dict[str, float]:
        unknown = sorted(set(labels) - set(self.label_set))
        if unknown:
            raise ValidationError(f"label(s) {unknown} are not in the label set {self.label_set}")
        split = self._make_split_from(texts, [self.label_set.index(label) for label in labels])
        return self._score(split, None)

    def predict_proba(self, texts: list[str]) -> torch.Tensor:
        """Probabilities ``[len(texts), labels]`` of the adapter as trained so far, through the engine's forward on
        cached frozen activations (what :meth:`evaluate` scores)."""
        return spread_evenly(torch.softmax(self.predict_logits(texts), dim=-1), self.uniform_share)

    def predict_logits(self, texts: list[str]) -> torch.Tensor:
        """Logits ``[len(texts), labels]`` as served (a fitted temperature is folded into the head once training
        ends); :meth:`predict_proba` spreads the uniform share over their softmax."""
        split = self._make_split_from(texts, [0] * len(texts))
        return self._all_logits(split).float().cpu()

    def result(self) -> AdapterWeights:
        return self.adapter.weights({"metrics": self.metrics, "history": self.history,
                                     "training_args": self.args.to_dict()})

    def train(self) -> AdapterWeights:
        self.prepare()
        self.fit()
        return self.result()

    # -- internals (``_split`` and ``_batches`` are hooks a subclass may replace) -----------------------------------
    def _batches(self, split: Split, rng: random.Random) -> list[list[int]]:
        return epoch_batches(split, self.args.batch_size, rng)

    def _split(self) -> tuple[list[int], list[int]]:
        return validation_indexes(self.texts, self.targets, self.args)

    def _make_split(self, indexes: list[int]) -> Split:
        split = self._make_split_from([self.texts[i] for i in indexes], [self.targets[i] for i in indexes])
        if self.soft_targets is not None:
            split.soft = torch.tensor([self.soft_targets[i] for i in indexes], dtype=torch.float32)
        return split

    def _make_split_from(self, texts: list[str], targets: list[int]) -> Split:
        return self.adapter.split_of(texts, targets, self.cache, self._encoding_progress)

    def _encoding_progress(self, done: int, total: int) -> None:
        if total > 256:  # a few batches are quick; only a long encoding says how far it is
            self.progress(0.0, f"encoding texts: {done:,}/{total:,}")

    def _class_weights(self, split: Split | None = None) -> torch.Tensor | None:
        return class_weights_of(split or self.train_split, len(self.label_set), self.args.class_weighting,
                                self.base.device)

    def _score(self, split: Split, class_weights: torch.Tensor | None) -> dict[str, float]:
        if not split.texts:
            return {"loss": float("nan"), "accuracy": float("nan"), "macro_f1": float("nan")}
        loss, predicted = self.adapter.scored(split, class_weights)
        return {"loss": loss, **classification_metrics(split.targets.tolist(), predicted, len(self.label_set))}

    def _all_logits(self, split: Split) -> torch.Tensor:
        return self.adapter.all_logits(split)

def _check_inputs(args: TrainingArguments, texts: list[str], labels: list[str], label_set: list[str],
                  annotators: list[str] | None) -> None:
    if len(texts) != len(labels):
        raise ValidationError(f"{len(texts)} texts but {len(labels)} labels")
    if annotators is not None and len(annotators) != len(texts):
        raise ValidationError(f"{len(texts)} texts but {len(annotators)} annotators")
    unknown = sorted(set(labels) - set(label_set))
    if unknown:
        raise ValidationError(f"label(s) {unknown} are not in the label set {label_set}")
    if len(texts) < args.min_labels:
        raise ValidationError(f"{len(texts)} labelled texts are too few to train; at least {args.min_labels} needed")
    strangers = sorted(set(args.decision_offsets or {}) - set(label_set))
    if strangers:
        raise ValidationError(f"decision_offsets name label(s) {strangers} that are not in the label set {label_set}")


def train_adapter(
    base: BaseModel,
    args: TrainingArguments,
    texts: list[str],
    labels: list[str],
    label_set: list[str],
    **kwargs: Any,
) -> AdapterWeights:
    """Convenience: one call that prepares, fits and returns the adapter."""
    return Trainer(base, args, texts, labels, label_set, **kwargs).train()


__all__ = ["Trainer", "classification_metrics", "train_adapter"]
