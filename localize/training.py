"""Training one user's adapter on that user's labels (after SetFit's small trainer).

Phases are named methods: :meth:`Trainer.prepare` splits off validation rows and computes the frozen
activations once, :meth:`Trainer.fit` trains (class weighting; early stopping on validation, or a MAP solve for a
linear head), :meth:`Trainer.evaluate` scores any labelled texts, and :meth:`Trainer.result` hands back the adapter.

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

import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from localize.activations import ActivationCache, get_activation_cache, pad_hidden
from localize.adapters import make_method
from localize.adapters.base import apply_head, init_head
from localize.base_model import BaseModel, cpu_has_bf16_matrix_units
from localize.calibration import calibration_record, combined_share, fit_calibration, spread_evenly
from localize.engine import AdapterWeights, forward_pooled
from localize.errors import ValidationError
from localize.map_head import class_weights_for, solve_map_head
from localize.training_args import TrainingArguments
from localize.training_rows import (
    Split,
    concat_splits,
    epoch_batches,
    merge_duplicates,
    row_lengths,
    validation_indexes,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]


def classification_metrics(labels: list[int], predicted: list[int], num_labels: int, *,
                           absent_labels_score: bool = True) -> dict[str, float]:
    """Accuracy and macro-F1, as scikit-learn's ``accuracy_score`` and ``f1_score(average="macro",
    zero_division=0)`` compute them, without their input checks (30 ms a call: a tenth of a small user's job).
    The macro average is over all ``num_labels`` labels (one neither given nor predicted scores 0, as with
    ``labels=range(num_labels)``), or with ``absent_labels_score=False`` over the labels given or predicted only
    (scikit-learn's default)."""
    if not len(labels):
        return {"accuracy": float("nan"), "macro_f1": float("nan")}
    truth, guess = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    hits = np.bincount(truth[truth == guess], minlength=num_labels)[:num_labels]
    seen = np.bincount(truth, minlength=num_labels)[:num_labels] + np.bincount(guess, minlength=num_labels)[:num_labels]
    f1 = np.divide(2 * hits, seen, out=np.zeros(num_labels), where=seen > 0)  # 2 TP / (2 TP + FP + FN)
    macro_f1 = f1.mean() if absent_labels_score else f1[seen > 0].mean()
    return {"accuracy": float((truth == guess).mean()), "macro_f1": float(macro_f1)}


class Trainer:
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
    ) -> None:
        """``annotators``: who gave each label (the pooled rows of a task prior), for ``annotator_loss_weight``."""
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
            index = {name: i for i, name in enumerate(sorted(set(annotators)))}
            self.annotations, self.num_annotators = {}, len(index)
            for text, name, target in zip(texts, annotators, self.targets):
                self.annotations.setdefault(text, []).append((index[name], target))
        if args.merge_duplicate_texts and len(set(texts)) < len(texts):
            self.texts, self.targets, self.soft_targets = merge_duplicates(texts, self.targets, len(self.label_set))
        self.cache = cache or get_activation_cache()
        self.progress = progress or (lambda fraction, message: None)
        self.method = make_method(args.method, args.method_options, base.dims)
        self.init = init
        self.encoder: AdapterWeights | None = None  # the prior whose encoding a head-only user reads
        self.history: list[dict[str, float]] = []
        self.metrics: dict[str, Any] = {}
        self.temperature, self.uniform_share = 1.0, 0.0  # fitted on validation rows by fit()
        self.decision_offsets = torch.tensor([float((args.decision_offsets or {}).get(label, 0.0))
                                              for label in self.label_set]) if args.decision_offsets else None
        self._prepared = False

    # -- phases ---------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        args = self.args
        self._generator = torch.Generator().manual_seed(args.seed)
        self.params, self.head = self._initial_parameters()
        self.annotator_offsets = {}  # each annotator's head is the shared head plus these; they start at zero
        if self.annotations is not None:
            shape = (self.num_annotators, len(self.label_set))
            self.annotator_offsets = {"weight": torch.zeros(*shape, self.base.dims.hidden_size, device=self.base.device),
                                      "bias": torch.zeros(*shape, device=self.base.device)}
        train_idx, val_idx = self._split()
        self.train_split = self._make_split(train_idx)
        self.val_split = self._make_split(val_idx) if val_idx else None
        self._prepared = True

    def fit(self) -> None:
        if not self._prepared:
            self.prepare()
        # Dropout draws from torch's global generator: seed it, inside a fork so callers' streams are untouched.
        devices = [self.base.device] if self.base.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.args.seed)
            self._fit()

    def _fit(self) -> None:
        started = time.perf_counter()
        class_weights = self._class_weights()
        map_head = self._fits_map_head()
        if map_head:
            # Toward the prior's head; without one, toward zero (plain L2-regularised logistic regression).
            center = {k: v.detach().clone() if self.from_prior else torch.zeros_like(v) for k, v in self.head.items()}
            self._solve_map_head(self.train_split, center, class_weights)
            best_epoch = None
        else:
            best_epoch = self._train_epochs(class_weights)
        best = self.history[best_epoch - 1] if best_epoch is not None else None
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
                self._solve_map_head(both, center, self._class_weights(both))
            else:
                self._refit_epochs(both, best_epoch)
                self.metrics["refit_epochs"] = best_epoch
            self.metrics.update({"refit_rows": len(both.texts), "train_seconds": time.perf_counter() - started})
        if self.temperature != 1.0:  # folded into the head: served logits are already calibrated, at no cost
            with torch.no_grad():
                self.head["weight"].div_(self.temperature)
                self.head["bias"].div_(self.temperature)
        if self.decision_offsets is not None:  # the task's decision rule, folded in too
            with torch.no_grad():
                self.head["bias"].add_(self.decision_offsets.to(self.head["bias"]))
        self.progress(1.0, "done: " + _describe(self.metrics))

    def _calibrate_on_validation(self) -> None:
        """What the validated model said on its validation rows, before they train too: a temperature and a
        uniform share fitted on them (``calibrate``) and the record of calibrated confidences that abstention
        thresholds are read from."""
        self.temperature, self.uniform_share, self.val_probabilities = 1.0, 0.0, None
        if self.val_split is None:
            return
        logits = self._all_logits(self.val_split).float()
        if self.args.calibrate:
            self.temperature, self.uniform_share = fit_calibration(logits,
                                                                   self._loss_targets(self.val_split, slice(None)))
            # The task's correction, measured where neither this version's epoch nor its pair was chosen.
            self.temperature *= self.args.temperature_scale
            self.uniform_share = combined_share(self.uniform_share, self.args.added_uniform_share)
        served = logits / self.temperature
        if self.decision_offsets is not None:
            served = served + self.decision_offsets.to(served)
        self.val_probabilities = spread_evenly(torch.softmax(served, dim=-1), self.uniform_share).cpu()
        self.metrics["temperature"] = self.temperature
        if self.uniform_share:  # read by the engine (AdapterWeights.uniform_share)
            self.metrics["uniform_share"] = self.uniform_share
        self.metrics["calibration"] = calibration_record(self.val_probabilities.numpy(),
                                                         self.val_split.targets.numpy())

    def _fits_map_head(self) -> bool:
        """Whether this fit is a linear head on pooled vectors (the task prior's encoding or the frozen base)
        solved by :meth:`_solve_map_head`."""
        return (self.args.head_fit == "map" and self.args.train_scope == "head" and not self.params
                and self.method.start_layer == self.base.dims.num_layers and not self.method.embeds_inputs)

    def _solve_map_head(self, split: Split, center: dict[str, torch.Tensor], class_weights: torch.Tensor | None) -> None:
        """The head's maximum a posteriori fit (:func:`solve_map_head`) on the split's pooled vectors."""
        device = self.base.device
        weight, bias = solve_map_head(torch.stack(split.inputs).to(device).float(),
                                      self._loss_targets(split, slice(None)).to(device), center,
                                      strength=self.args.head_prior_strength, class_weights=class_weights)
        with torch.no_grad():
            self.head["weight"].copy_(weight)
            self.head["bias"].copy_(bias)

    def _train_epochs(self, class_weights: torch.Tensor | None) -> int | None:
        """AdamW epochs with early stopping on validation; leaves the best epoch's parameters and returns it."""
        args = self.args
        trainable = self._trainable()
        for tensor in trainable:
            tensor.requires_grad_(True)
        optimizer = torch.optim.AdamW(trainable, lr=self._learning_rate(), weight_decay=args.weight_decay)
        self._scheduler = self._make_scheduler(optimizer, len(self.train_split.texts))
        accelerator = _accelerator(self.base.device)
        self._order_rng = random.Random(args.seed)
        self._initial_state = self._snapshot()
        self._epochs_started = time.perf_counter()
        best_score, best_epoch, best_state, stale = None, None, None, 0
        epochs = self._epochs_to_run()
        for epoch in range(epochs):
            record = {"epoch": epoch + 1, "train_loss": self._epoch(self.train_split, optimizer, accelerator,
                                                                    class_weights, self._order_rng, epoch=epoch)}
            if self.val_split is not None:
                val = self._score(self.val_split, class_weights)
                record.update({"val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"]})
                # Macro-F1 is what users feel; validation loss only breaks ties (it rises with confidence
                # long before the decisions get worse, so stopping on it alone stops far too early).
                score = (val["macro_f1"], -val["loss"]) if args.early_stopping == "macro_f1" else (-val["loss"],)
                if best_score is None or score > best_score:
                    best_score, best_epoch, stale = score, epoch + 1, 0
                    best_state = self._snapshot()
                else:
                    stale += 1
            self.history.append(record)
            done = (epoch + 1) / epochs
            self.progress(done, f"epoch {epoch + 1}/{epochs}: " + _describe(record) + self._eta(done))
            if self.val_split is not None and stale >= args.patience:
                break
        if best_state is not None:
            self._restore(best_state)
        for tensor in trainable:
            tensor.requires_grad_(False)
        return best_epoch

    def _epochs_to_run(self) -> int:
        return min(self.args.max_epochs, self.args.last_epoch or self.args.max_epochs)

    def _refit_epochs(self, split: Split, epochs: int) -> None:
        """Trains again from the start on ``split`` for ``epochs`` epochs."""
        self._restore(self._initial_state)
        with torch.no_grad():
            for tensor in self.annotator_offsets.values():
                tensor.zero_()
        trainable = self._trainable()
        for tensor in trainable:
            tensor.requires_grad_(True)
        optimizer = torch.optim.AdamW(trainable, lr=self._learning_rate(), weight_decay=self.args.weight_decay)
        self._scheduler = self._make_scheduler(optimizer, len(split.texts))
        weights = self._class_weights(split)
        for _ in range(epochs):
            self._epoch(split, optimizer, _accelerator(self.base.device), weights, self._order_rng)
        for tensor in trainable:
            tensor.requires_grad_(False)

    def _trainable(self) -> list[torch.Tensor]:
        return [*self.params.values(), *self.head.values(), *self.annotator_offsets.values()]

    def _learning_rate(self) -> float:
        return self.args.learning_rate or self.method.default_learning_rate

    def _epoch(self, split: Split, optimizer: torch.optim.Optimizer, accelerator: Any,
               class_weights: torch.Tensor | None, rng: random.Random, epoch: int | None = None) -> float:
        """One pass over ``split``; returns the mean training loss. Given its ``epoch`` (from 0), it reports its
        rows as it goes (at most once a second), so a long epoch (a task prior's) shows how far it is."""
        total, seen, reported = 0.0, 0, time.perf_counter()
        for batch in self._batches(split, rng):
            with self._autocast(split, accelerator):
                pooled = self._pooled(split, batch, training=True)
                logits = apply_head(pooled, self.head["weight"], self.head["bias"])
                targets = self._loss_targets(split, batch).to(logits.device)
                loss = F.cross_entropy(logits.float(), targets, weight=class_weights)
                if self.annotations is not None:
                    loss = loss + self.args.annotator_loss_weight * self._annotator_loss(
                        pooled, [split.texts[i] for i in batch], class_weights)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            if self._scheduler is not None:
                self._scheduler.step()
            total += loss.item() * len(batch)
            seen += len(batch)
            if epoch is not None and time.perf_counter() - reported >= 1.0 and seen < len(split.texts):
                reported = time.perf_counter()
                done = (epoch + seen / len(split.texts)) / self._epochs_to_run()
                self.progress(done, f"epoch {epoch + 1}/{self._epochs_to_run()}: {seen:,}/{len(split.texts):,} rows"
                              + self._eta(done))
        return total / max(1, len(split.texts))

    def _autocast(self, split: Split, accelerator: Any) -> contextlib.AbstractContextManager:
        """The training step's precision (``mixed_precision``). Rows that are pooled vectors (a head) are too
        little work to gain from bf16 and stay float32."""
        mode = self.args.mixed_precision
        if mode == "no":
            return contextlib.nullcontext()
        if self.base.device.type != "cpu":
            return accelerator.autocast()  # bf16 where the GPU has it (accelerate's choice), else float32
        runs_layers = self.method.embeds_inputs or (bool(split.inputs) and split.inputs[0].dim() > 1)
        if runs_layers and (mode == "bf16" or cpu_has_bf16_matrix_units()):
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _eta(self, done: float) -> str:
        """``done`` of the epoch cap so far: the time left at most (early stopping may end sooner)."""
        if not 0 < done < 1:
            return ""
        elapsed = time.perf_counter() - self._epochs_started
        return f"; at most {format_duration(elapsed * (1 - done) / done)} left"

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
        meta = {"metrics": self.metrics, "history": self.history, "training_args": self.args.to_dict()}
        if self.encoder is not None and "source" in self.encoder.meta:  # a stored prior: saved as a reference
            meta["encoder"] = dict(self.encoder.meta["source"])
        return AdapterWeights(
            method=self.method,
            params={k: v.detach().clone() for k, v in self.params.items()},
            head={k: v.detach().clone() for k, v in self.head.items()},
            labels=self.label_set,
            base_model_id=self.base.dims.model_id,
            meta=meta,
            encoder=self.encoder,
        )

    def train(self) -> AdapterWeights:
        self.prepare()
        self.fit()
        return self.result()

    # -- internals ------------------------------------------------------------------------------------------------
    def _make_scheduler(self, optimizer: torch.optim.Optimizer, rows: int) -> Any:
        if self.args.lr_schedule == "constant":
            return None
        total = self.args.max_epochs * -(-rows // self.args.batch_size)
        warmup = max(1, int(0.06 * total))

        def factor(step: int) -> float:
            return (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

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
        split = Split(texts=texts, targets=torch.tensor(targets, dtype=torch.long))
        if self.encoder is not None:  # the head reads the prior's encoding, computed once per text and cached
            split.inputs = self.cache.encoded(self.base, self.encoder, texts, progress=self._encoding_progress)
        elif self.method.embeds_inputs:
            ids, mask = self.base.tokenize(texts) if texts else (None, None)
            split.input_ids = [ids[i, : int(mask[i].sum())].cpu() for i in range(len(texts))] if texts else []
        else:
            split.inputs = self.cache.frozen_inputs(self.base, texts, self.method.start_layer,
                                                    progress=self._encoding_progress)
        return split

    def _encoding_progress(self, done: int, total: int) -> None:
        if total > 256:  # a few batches are quick; only a long encoding says how far it is
            self.progress(0.0, f"encoding texts: {done:,}/{total:,}")

    def _initial_parameters(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        device = self.base.device
        init = self.init if self.args.init_from_prior else None
        if self.args.train_scope == "head":
            # A head on the prior's encoding; without a usable prior, a head on the frozen base (the head method's
            # own MLP trains too: it is part of the head).
            usable = init is not None and init.labels == self.label_set and init.encoder is None
            if usable and init.params:  # a private copy: a resident prior's tensors are slots an engine may reuse
                self.encoder = AdapterWeights(init.method, {k: v.detach().clone() for k, v in init.params.items()},
                                              {}, init.labels, init.base_model_id, version=init.version,
                                              meta=dict(init.meta))
            if self.method.name != "head" or self.encoder is not None:
                self.method = make_method("head", {"hidden": self.args.head_hidden}, self.base.dims)
            self.from_prior = usable and (self.encoder is not None or init.method.family() == self.method.family())
            if self.from_prior:
                head = {k: v.detach().clone().float().to(device) for k, v in init.head.items()}
                if self.encoder is None:
                    params = {k: v.detach().clone().float().to(device) for k, v in init.params.items()}
                else:  # the user's own MLP, if any, starts as the identity: the head begins as the prior's
                    params = {k: v.to(device) for k, v in self.method.init_params(self.base, self._generator).items()}
                return params, head
            init = None
        self.from_prior = (init is not None and init.method.family() == self.method.family()
                           and init.labels == self.label_set)
        if self.from_prior:
            params = {k: v.detach().clone().float().to(device) for k, v in init.params.items()}
            head = {k: v.detach().clone().float().to(device) for k, v in init.head.items()}
            return params, head
        params = {k: v.to(device) for k, v in self.method.init_params(self.base, self._generator).items()}
        head = {k: v.to(device) for k, v in init_head(len(self.label_set), self.base.dims.hidden_size, self._generator).items()}
        return params, head

    def _class_weights(self, split: Split | None = None) -> torch.Tensor | None:
        split = split or self.train_split
        if self.args.class_weighting == "none":
            return None
        if split.soft is not None:
            counts = split.soft.sum(0).double().numpy()
        else:
            counts = np.bincount(split.targets.numpy(), minlength=len(self.label_set)).astype(float)
        weights = class_weights_for(counts, self.args.class_weighting)
        return torch.tensor(weights, dtype=torch.float32, device=self.base.device)

    @staticmethod
    def _loss_targets(split: Split, batch: list[int] | slice) -> torch.Tensor:
        return split.soft[batch] if split.soft is not None else split.targets[batch]

    def _annotator_loss(self, pooled: torch.Tensor, texts: list[str], class_weights: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy of every label the batch's texts were given, under its annotator's own head."""
        pairs = [(row, who, target) for row, text in enumerate(texts) for who, target in self.annotations[text]]
        rows, who, targets = (torch.tensor(column, device=pooled.device) for column in zip(*pairs))
        weight = self.head["weight"] + self.annotator_offsets["weight"][who]
        bias = self.head["bias"] + self.annotator_offsets["bias"][who]
        return F.cross_entropy(apply_head(pooled[rows], weight, bias).float(), targets, weight=class_weights)

    def _logits(self, split: Split, batch: list[int], *, training: bool) -> torch.Tensor:
        return apply_head(self._pooled(split, batch, training=training), self.head["weight"], self.head["bias"])

    def _pooled(self, split: Split, batch: list[int], *, training: bool) -> torch.Tensor:
        size = len(batch)
        params = self.params  # one user's: shared by every row, no batch dimension
        device = self.base.device
        if self.method.embeds_inputs:
            rows = [split.input_ids[i] for i in batch]
            longest = max(len(r) for r in rows)
            input_ids = torch.zeros(size, longest, dtype=torch.long)
            mask = torch.zeros(size, longest, dtype=torch.long)
            for i, r in enumerate(rows):
                input_ids[i, : len(r)] = r
                mask[i, : len(r)] = 1
            return forward_pooled(self.base, self.method, params, None, mask.to(device),
                                  input_ids=input_ids.to(device), training=training,
                                  pooled_dropout=self.args.pooled_dropout)
        rows = [split.inputs[i] for i in batch]
        if rows[0].dim() == 1:  # pooled embeddings: nothing inside the encoder changes
            start, mask = torch.stack(rows), torch.ones(size, 1, dtype=torch.long)
        else:
            start, mask = pad_hidden(rows)
        return forward_pooled(self.base, self.method, params, start.to(device), mask.to(device),
                              training=training, pooled_dropout=self.args.pooled_dropout)

    def _score(self, split: Split, class_weights: torch.Tensor | None) -> dict[str, float]:
        if not split.texts:
            return {"loss": float("nan"), "accuracy": float("nan"), "macro_f1": float("nan")}
        pooled = self._all_pooled(split)
        all_logits = apply_head(pooled, self.head["weight"], self.head["bias"])
        targets = self._loss_targets(split, slice(None)).to(all_logits.device)
        loss = F.cross_entropy(all_logits, targets, weight=class_weights).item()
        if self.annotations is not None:  # the annotators' own labels are part of what the prior learns
            with torch.no_grad():
                loss += self.args.annotator_loss_weight * self._annotator_loss(pooled, split.texts, class_weights).item()
        predicted = all_logits.argmax(-1).cpu().tolist()
        return {"loss": loss, **classification_metrics(split.targets.tolist(), predicted, len(self.label_set))}

    def _all_logits(self, split: Split) -> torch.Tensor:
        return apply_head(self._all_pooled(split), self.head["weight"], self.head["bias"])

    def _all_pooled(self, split: Split) -> torch.Tensor:
        """Every row's pooled vector, in the split's order. Rows that run encoder layers go in chunks of similar
        length: in the split's order a chunk pads to its longest row, about three times the work on tweets."""
        rows = len(split.texts)
        if not rows:
            return torch.empty(0, self.base.dims.hidden_size, device=self.base.device)
        lengths = row_lengths(split)
        order = sorted(range(rows), key=lengths.__getitem__) if lengths is not None else list(range(rows))
        with torch.no_grad():
            pooled = torch.cat([self._pooled(split, order[start : start + 128], training=False)
                                for start in range(0, rows, 128)])
        restored = torch.empty_like(pooled)
        restored[torch.tensor(order, device=pooled.device)] = pooled
        return restored

    def _snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "head": {k: v.detach().clone() for k, v in self.head.items()},
        }

    def _restore(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v)
            for k, v in state["head"].items():
                self.head[k].copy_(v)


@functools.lru_cache(maxsize=None)
def _accelerator(device: torch.device):
    """accelerate handles backward and mixed precision: bf16 autocast on a GPU that has it, full precision on a CPU."""
    from accelerate import Accelerator

    on_gpu = device.type == "cuda"
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    return Accelerator(cpu=not on_gpu, mixed_precision="bf16" if bf16 else "no")


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``: how long, for a person."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _describe(record: dict[str, Any]) -> str:
    keys = ("train_loss", "val_loss", "val_accuracy", "val_macro_f1")
    return ", ".join(f"{k}={record[k]:.3f}" for k in keys if isinstance(record.get(k), float))


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


__all__ = ["Trainer", "classification_metrics", "format_duration", "train_adapter"]
