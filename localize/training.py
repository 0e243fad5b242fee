"""Training one user's adapter on that user's labels (after SetFit's small trainer).

Phases are named methods: :meth:`Trainer.prepare` splits off validation rows and computes the frozen
activations once, :meth:`Trainer.fit` trains with class weighting and early stopping on validation loss,
:meth:`Trainer.evaluate` scores any labelled texts, and :meth:`Trainer.result` hands back the adapter.

The default recipe (reports/accuracy.md) has two levels. The task prior tunes the base's top two layers
(LoRA on their six linear maps) and a head on every user's pooled labels; each user then trains only a linear
head on the prior's encoding (``train_scope="head"``), which references the prior instead of copying it, so
a user costs a head's bytes and the engine runs the tuned layers once per text for every user of the task.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score

from localize.activations import ActivationCache, get_activation_cache, pad_hidden
from localize.adapters import available_methods, get_method, make_method
from localize.adapters.base import init_head
from localize.base_model import BaseModel
from localize.engine import AdapterWeights, forward_logits
from localize.errors import ValidationError

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
CLASS_WEIGHTINGS = ("balanced", "sqrt", "none")
TRAIN_SCOPES = ("head", "all")
ALL_SITES = ["query", "key", "value", "attention_output", "intermediate", "output"]
# Options a method gets when the arguments name none (``method_options=None``); explicit ``{}`` means the
# method's own defaults. LoRA's are the default recipe's task-tuned encoder.
RECOMMENDED_OPTIONS: dict[str, dict[str, Any]] = {"lora": {"r": 8, "layers": [-2, -1], "sites": ALL_SITES}}
# How the recommended recipe's task prior trains (prior_* arguments left None); other recipes' priors train as
# their users do.
RECOMMENDED_PRIOR: dict[str, Any] = {"prior_max_epochs": 3, "prior_learning_rate": 1e-3, "prior_class_weighting": "sqrt"}


def recommended_options(method: str) -> dict[str, Any]:
    return json.loads(json.dumps(RECOMMENDED_OPTIONS.get(method, {})))  # a deep copy


@dataclass
class TrainingArguments:
    method: str = field(default="lora", metadata={"help": f"Adapter method, one of {available_methods()}. With "
                        "train_scope=head it is the task prior's method; users train a head on the prior's encoding."})
    method_options: dict[str, Any] | None = field(default=None, metadata={"help": "The method's config fields; None "
                                                  "takes the recommended ones (lora: r=8 on all six linear maps of "
                                                  "the top two layers), {} the method's own defaults."})
    max_epochs: int = field(default=100, metadata={"help": "Upper bound; early stopping usually ends sooner."})
    batch_size: int = field(default=32, metadata={"help": "Rows per optimisation step."})
    learning_rate: float | None = field(default=None, metadata={"help": "None takes the method's default."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    validation_fraction: float = field(default=0.15, metadata={"help": "Share of labels held out for validation."})
    min_validation_rows: int = field(default=4, metadata={"help": "Below this many held-out rows, no early stopping."})
    patience: int = field(default=10, metadata={"help": "Epochs without a better validation macro-F1 before stopping."})
    class_weighting: str = field(default="none", metadata={"help": "none, sqrt (inverse square root of the "
                                 "frequency) or balanced (inverse frequency: more minority recall, less accuracy)."})
    pooled_dropout: float = field(default=0.1, metadata={"help": "Dropout on the pooled embedding while training."})
    seed: int = field(default=0, metadata={"help": "Seeds the split, the initialisation and the batch order."})
    init_from_prior: bool = field(default=True, metadata={"help": "Start from the task prior when one exists."})
    train_scope: str | None = field(default=None, metadata={"help": "None: head for the recommended options of a "
                             "method (the default recipe), else all. head: a user trains only a linear classification "
                             "head, on the task prior's encoding (referenced, not copied) when there is a prior with "
                             "the same labels, else on the frozen base (the head method's own MLP, if any, trains "
                             "too); all: the user trains the method's parameters and the head, starting from the "
                             "prior of the same method when there is one. The prior itself always trains all."})
    prior_max_epochs: int | None = field(default=None, metadata={"help": "Epoch cap for the task prior; None: the "
                                         "recommended recipe's (3), or max_epochs for other recipes."})
    prior_learning_rate: float | None = field(default=None, metadata={"help": "The task prior's learning rate; None: "
                                              "the recommended recipe's (1e-3), or learning_rate."})
    prior_class_weighting: str | None = field(default=None, metadata={"help": "The task prior's class weighting; "
                                              "None: the recommended recipe's (sqrt), or class_weighting."})
    merge_duplicate_texts: bool = field(default=True, metadata={"help": "Rows that repeat a text (the task prior's "
                                        "pooled labels) train once, with each label's share as a soft target."})
    min_labels: int = field(default=4, metadata={"help": "Fewest labels a user needs to train."})
    refit_on_all: bool = field(default=False, metadata={"help": "After early stopping, train again from the start "
                               "on the training and validation labels together, for the epochs validation chose."})

    def __post_init__(self) -> None:
        if self.method not in available_methods():
            raise ValueError(f"method {self.method!r} is not one of {available_methods()}")
        if self.method_options is None:
            self.method_options = recommended_options(self.method)
            if self.method in RECOMMENDED_OPTIONS:
                if self.train_scope is None:
                    self.train_scope = "head"
                for name, value in RECOMMENDED_PRIOR.items():
                    if getattr(self, name) is None:
                        setattr(self, name, value)
        if self.train_scope is None:
            self.train_scope = "all"
        # The method's own options are checked now, not when a worker picks the job up.
        get_method(self.method).config_class.from_dict(self.method_options)
        checks = [
            (self.max_epochs >= 1, f"max_epochs={self.max_epochs} must be >= 1"),
            (self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1"),
            (self.learning_rate is None or self.learning_rate > 0, f"learning_rate={self.learning_rate} must be > 0"),
            (0 <= self.validation_fraction < 1, f"validation_fraction={self.validation_fraction} must be in [0, 1)"),
            (self.patience >= 1, f"patience={self.patience} must be >= 1"),
            (self.class_weighting in CLASS_WEIGHTINGS,
             f"class_weighting={self.class_weighting!r} must be one of {CLASS_WEIGHTINGS}"),
            (self.prior_class_weighting is None or self.prior_class_weighting in CLASS_WEIGHTINGS,
             f"prior_class_weighting={self.prior_class_weighting!r} must be one of {CLASS_WEIGHTINGS}"),
            (0 <= self.pooled_dropout < 1, f"pooled_dropout={self.pooled_dropout} must be in [0, 1)"),
            (self.min_labels >= 2, f"min_labels={self.min_labels} must be >= 2"),
            (self.train_scope in TRAIN_SCOPES, f"train_scope={self.train_scope!r} must be one of {TRAIN_SCOPES}"),
            (self.prior_learning_rate is None or self.prior_learning_rate > 0,
             f"prior_learning_rate={self.prior_learning_rate} must be > 0"),
            (self.prior_max_epochs is None or self.prior_max_epochs >= 1,
             f"prior_max_epochs={self.prior_max_epochs} must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def for_prior(self) -> TrainingArguments:
        """The arguments the task prior trains with: these, training everything, with the prior's epoch cap,
        learning rate and class weighting."""
        return dataclasses.replace(self, train_scope="all", init_from_prior=False,
                                   max_epochs=self.prior_max_epochs or self.max_epochs,
                                   learning_rate=self.prior_learning_rate or self.learning_rate,
                                   class_weighting=self.prior_class_weighting or self.class_weighting)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrainingArguments:
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training argument(s) {unknown}; known: {sorted(known)}")
        from pydantic import TypeAdapter
        from pydantic import ValidationError as PydanticValidationError

        try:  # types first, so {"max_epochs": "many"} is named, not a TypeError from a comparison
            return TypeAdapter(cls).validate_python(values, strict=False)
        except PydanticValidationError as error:
            problems = [
                f"{'.'.join(str(p) for p in e['loc'])}={e.get('input')!r}: {e['msg']}" if e["loc"]
                else str(e.get("ctx", {}).get("error") or e["msg"])  # a rule from __post_init__, already named
                for e in error.errors()
            ]
            raise ValueError("; ".join(problems)) from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TrainingArguments:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as error:
            raise ValueError(f"training arguments file {str(path)!r} is not valid JSON: {error}") from error


def apply_overrides(values: dict[str, Any], options: list[str]) -> dict[str, Any]:
    """Applies ``key=value`` strings (values parsed as JSON where they can be); ``method.X`` sets a method option
    on top of the method's own defaults (naming options leaves the recommended ones, and the head-only default)."""
    values = dict(values)
    if values.get("method_options") is not None or any(option.startswith("method.") for option in options):
        values["method_options"] = dict(values.get("method_options") or {})
    for option in options:
        key, sep, raw = option.partition("=")
        if not sep or not key:
            raise ValueError(f"override {option!r} must look like key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.startswith("method."):
            values["method_options"][key.removeprefix("method.")] = value
        else:
            values[key] = value
    return values


def classification_metrics(labels: list[int], predicted: list[int], num_labels: int) -> dict[str, float]:
    if not labels:
        return {"accuracy": float("nan"), "macro_f1": float("nan")}
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=list(range(num_labels)), zero_division=0)),
    }


@dataclass
class _Split:
    texts: list[str]
    targets: torch.Tensor  # [rows]: the label index (the most frequent one where a text has several)
    soft: torch.Tensor | None = None  # [rows, labels]: each label's share, where texts were merged
    inputs: list[torch.Tensor] | None = None  # per row: the frozen start-layer input, or the pooled encoding
    input_ids: list[torch.Tensor] | None = None  # token ids per row, for methods that change the embeddings


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
    ) -> None:
        if len(texts) != len(labels):
            raise ValidationError(f"{len(texts)} texts but {len(labels)} labels")
        unknown = sorted(set(labels) - set(label_set))
        if unknown:
            raise ValidationError(f"label(s) {unknown} are not in the label set {label_set}")
        if len(texts) < args.min_labels:
            raise ValidationError(f"{len(texts)} labelled texts are too few to train; at least {args.min_labels} needed")
        self.base = base
        self.args = args
        self.texts = texts
        self.label_set = list(label_set)
        self.targets = [self.label_set.index(label) for label in labels]
        self.soft_targets: list[list[float]] | None = None
        if args.merge_duplicate_texts and len(set(texts)) < len(texts):
            self.texts, self.targets, self.soft_targets = _merge_duplicates(texts, self.targets, len(self.label_set))
        self.cache = cache or get_activation_cache()
        self.progress = progress or (lambda fraction, message: None)
        self.method = make_method(args.method, args.method_options, base.dims)
        self.init = init
        self.encoder: AdapterWeights | None = None  # the prior whose encoding a head-only user reads
        self.history: list[dict[str, float]] = []
        self.metrics: dict[str, Any] = {}
        self._prepared = False

    # -- phases ---------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        args = self.args
        self._generator = torch.Generator().manual_seed(args.seed)
        self.params, self.head = self._initial_parameters()
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
        args = self.args
        started = time.perf_counter()
        trainable = [*self.params.values(), *self.head.values()]
        for tensor in trainable:
            tensor.requires_grad_(True)
        lr = args.learning_rate or self.method.default_learning_rate
        optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=args.weight_decay)
        accelerator = _accelerator(self.base.device)
        class_weights = self._class_weights()
        rows = len(self.train_split.texts)
        order_rng = random.Random(args.seed)
        initial = self._snapshot()
        best_score, best_epoch, best_state, stale = None, None, None, 0
        for epoch in range(args.max_epochs):
            record = {"epoch": epoch + 1,
                      "train_loss": self._epoch(self.train_split, optimizer, accelerator, class_weights, order_rng)}
            if self.val_split is not None:
                val = self._score(self.val_split, class_weights)
                record.update({"val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"]})
                # Macro-F1 is what users feel; validation loss only breaks ties (it rises with confidence
                # long before the decisions get worse, so stopping on it alone stops far too early).
                score = (val["macro_f1"], -val["loss"])
                if best_score is None or score > best_score:
                    best_score, best_epoch, stale = score, epoch + 1, 0
                    best_state = self._snapshot()
                else:
                    stale += 1
            self.history.append(record)
            self.progress((epoch + 1) / args.max_epochs, f"epoch {epoch + 1}: " + _describe(record))
            if self.val_split is not None and stale >= args.patience:
                break
        if best_state is not None:
            self._restore(best_state)
        for tensor in trainable:
            tensor.requires_grad_(False)
        train_scores = self._score(self.train_split, class_weights)
        self.metrics = {
            "train_loss": train_scores["loss"],
            "train_accuracy": train_scores["accuracy"],
            "train_macro_f1": train_scores["macro_f1"],
            "epochs": len(self.history),
            "best_epoch": best_epoch,
            "train_rows": rows,
            "val_rows": 0 if self.val_split is None else len(self.val_split.texts),
            "train_seconds": time.perf_counter() - started,
        }
        if self.val_split is not None:
            val = self._score(self.val_split, class_weights)
            self.metrics.update({"val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"]})
        if args.refit_on_all and best_epoch is not None:
            # The held-out labels chose the epoch count; now they train too (they are a sixth of a small user's
            # labels). The validation figures above stay those of the model that was validated.
            self._restore(initial)
            both = _concat(self.train_split, self.val_split)
            for tensor in trainable:
                tensor.requires_grad_(True)
            optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=args.weight_decay)
            weights = self._class_weights(both)
            for _ in range(best_epoch):
                self._epoch(both, optimizer, accelerator, weights, order_rng)
            for tensor in trainable:
                tensor.requires_grad_(False)
            self.metrics.update({"refit_rows": len(both.texts), "refit_epochs": best_epoch,
                                 "train_seconds": time.perf_counter() - started})
        self.progress(1.0, "done: " + _describe(self.metrics))

    def _epoch(self, split: _Split, optimizer: torch.optim.Optimizer, accelerator: Any,
               class_weights: torch.Tensor | None, rng: random.Random) -> float:
        """One pass over ``split``; returns the mean training loss."""
        total = 0.0
        for batch in self._batches(split, rng):
            with accelerator.autocast():
                logits = self._logits(split, batch, training=True)
                targets = self._loss_targets(split, batch).to(logits.device)
                loss = F.cross_entropy(logits.float(), targets, weight=class_weights)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            total += loss.item() * len(batch)
        return total / max(1, len(split.texts))

    def evaluate(self, texts: list[str], labels: list[str]) -> dict[str, float]:
        unknown = sorted(set(labels) - set(self.label_set))
        if unknown:
            raise ValidationError(f"label(s) {unknown} are not in the label set {self.label_set}")
        split = self._make_split_from(texts, [self.label_set.index(label) for label in labels])
        return self._score(split, None)

    def predict_proba(self, texts: list[str]) -> torch.Tensor:
        """Probabilities ``[len(texts), labels]`` of the adapter as trained so far, through the engine's forward on
        cached frozen activations (what :meth:`evaluate` scores)."""
        split = self._make_split_from(texts, [0] * len(texts))
        return torch.softmax(self._all_logits(split).float(), dim=-1).cpu()

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
    def _batches(self, split: _Split, rng: random.Random) -> list[list[int]]:
        """One epoch's batches in random order. Rows that run encoder layers are grouped by length within windows
        of 50 batches (as transformers' ``group_by_length``), so little time goes to padding."""
        size = self.args.batch_size
        order = list(range(len(split.texts)))
        rng.shuffle(order)
        if split.input_ids is not None:
            lengths = [len(ids) for ids in split.input_ids]
        elif split.inputs and split.inputs[0].dim() == 2:  # [tokens, hidden] per row (pooled rows are 1-D)
            lengths = [row.shape[0] for row in split.inputs]
        else:
            lengths = None
        if lengths is not None:
            window = 50 * size
            order = [i for start in range(0, len(order), window)
                     for i in sorted(order[start : start + window], key=lengths.__getitem__)]
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        rng.shuffle(batches)
        return batches

    def _split(self) -> tuple[list[int], list[int]]:
        rows = len(self.texts)
        n_val = int(round(rows * self.args.validation_fraction))
        if n_val < self.args.min_validation_rows or rows - n_val < 2:
            return list(range(rows)), []
        # Stratified: each class gives its share of validation rows, at least one where it has two or more.
        val: list[int] = []
        for members in shuffled_by_class(self.targets, self.args.seed):
            take = int(round(len(members) * self.args.validation_fraction))
            if len(members) >= 2:
                take = max(1, take)
            val.extend(members[: min(take, len(members) - 1)])
        val_set = set(val)
        return [i for i in range(rows) if i not in val_set], sorted(val)

    def _make_split(self, indexes: list[int]) -> _Split:
        split = self._make_split_from([self.texts[i] for i in indexes], [self.targets[i] for i in indexes])
        if self.soft_targets is not None:
            split.soft = torch.tensor([self.soft_targets[i] for i in indexes], dtype=torch.float32)
        return split

    def _make_split_from(self, texts: list[str], targets: list[int]) -> _Split:
        split = _Split(texts=texts, targets=torch.tensor(targets, dtype=torch.long))
        if self.encoder is not None:  # the head reads the prior's encoding, computed once per text and cached
            split.inputs = self.cache.encoded(self.base, self.encoder, texts)
        elif self.method.embeds_inputs:
            ids, mask = self.base.tokenize(texts) if texts else (None, None)
            split.input_ids = [ids[i, : int(mask[i].sum())].cpu() for i in range(len(texts))] if texts else []
        else:
            split.inputs = self.cache.frozen_inputs(self.base, texts, self.method.start_layer)
        return split

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
                self.method = make_method("head", {}, self.base.dims)
            self.from_prior = usable and (self.encoder is not None or init.method.family() == self.method.family())
            if self.from_prior:
                head = {k: v.detach().clone().float().to(device) for k, v in init.head.items()}
                params = {} if self.encoder is not None else \
                    {k: v.detach().clone().float().to(device) for k, v in init.params.items()}
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

    def _class_weights(self, split: _Split | None = None) -> torch.Tensor | None:
        split = split or self.train_split
        if self.args.class_weighting == "none":
            return None
        if split.soft is not None:
            counts = split.soft.sum(0).double().numpy()
        else:
            counts = np.bincount(split.targets.numpy(), minlength=len(self.label_set)).astype(float)
        present = counts > 0
        weights = np.zeros_like(counts)
        weights[present] = counts[present].sum() / (present.sum() * counts[present])
        if self.args.class_weighting == "sqrt":
            weights = np.sqrt(weights)
        return torch.tensor(weights, dtype=torch.float32, device=self.base.device)

    @staticmethod
    def _loss_targets(split: _Split, batch: list[int] | slice) -> torch.Tensor:
        return split.soft[batch] if split.soft is not None else split.targets[batch]

    def _logits(self, split: _Split, batch: list[int], *, training: bool) -> torch.Tensor:
        size = len(batch)
        params, head = self.params, self.head  # one user's: shared by every row, no batch dimension
        device = self.base.device
        if self.method.embeds_inputs:
            rows = [split.input_ids[i] for i in batch]
            longest = max(len(r) for r in rows)
            input_ids = torch.zeros(size, longest, dtype=torch.long)
            mask = torch.zeros(size, longest, dtype=torch.long)
            for i, r in enumerate(rows):
                input_ids[i, : len(r)] = r
                mask[i, : len(r)] = 1
            return forward_logits(self.base, self.method, params, head, None, mask.to(device),
                                  input_ids=input_ids.to(device), training=training,
                                  pooled_dropout=self.args.pooled_dropout)
        rows = [split.inputs[i] for i in batch]
        if rows[0].dim() == 1:  # pooled embeddings: nothing inside the encoder changes
            start, mask = torch.stack(rows), torch.ones(size, 1, dtype=torch.long)
        else:
            start, mask = pad_hidden(rows)
        return forward_logits(self.base, self.method, params, head, start.to(device), mask.to(device),
                              training=training, pooled_dropout=self.args.pooled_dropout)

    def _score(self, split: _Split, class_weights: torch.Tensor | None) -> dict[str, float]:
        if not split.texts:
            return {"loss": float("nan"), "accuracy": float("nan"), "macro_f1": float("nan")}
        all_logits = self._all_logits(split)
        targets = self._loss_targets(split, slice(None)).to(all_logits.device)
        loss = F.cross_entropy(all_logits, targets, weight=class_weights).item()
        predicted = all_logits.argmax(-1).cpu().tolist()
        return {"loss": loss, **classification_metrics(split.targets.tolist(), predicted, len(self.label_set))}

    def _all_logits(self, split: _Split) -> torch.Tensor:
        rows = len(split.texts)
        with torch.no_grad():
            chunks = [self._logits(split, list(range(start, min(rows, start + 128))), training=False)
                      for start in range(0, rows, 128)]
        return torch.cat(chunks) if chunks else torch.empty(0, len(self.label_set))

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


def _concat(first: _Split, second: _Split | None) -> _Split:
    """The rows of both splits, in one."""
    if second is None:
        return first

    def join(a, b):  # noqa: ANN001, ANN202
        if a is None or b is None:
            return None
        return torch.cat([a, b]) if isinstance(a, torch.Tensor) else a + b

    return _Split(texts=first.texts + second.texts, targets=torch.cat([first.targets, second.targets]),
                  soft=join(first.soft, second.soft), inputs=join(first.inputs, second.inputs),
                  input_ids=join(first.input_ids, second.input_ids))


def shuffled_by_class(targets: list[int], seed: int) -> list[list[int]]:
    """Row indexes grouped by target (classes in order of first appearance), each group shuffled by ``seed``: the
    draw a stratified validation split takes its rows from."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(target, []).append(index)
    for members in by_class.values():
        rng.shuffle(members)
    return list(by_class.values())


def _merge_duplicates(texts: list[str], targets: list[int], num_labels: int) -> tuple[list[str], list[int], list[list[float]]]:
    """One row per distinct text: its most frequent label (ties: the lower index) and each label's share."""
    counts: dict[str, list[int]] = {}
    for text, target in zip(texts, targets):
        counts.setdefault(text, [0] * num_labels)[target] += 1
    merged = list(counts)
    hard = [max(range(num_labels), key=lambda k: (counts[t][k], -k)) for t in merged]
    soft = [[c / sum(counts[t]) for c in counts[t]] for t in merged]
    return merged, hard, soft


@functools.lru_cache(maxsize=None)
def _accelerator(device: torch.device):
    """accelerate handles backward and mixed precision: bf16 autocast on a GPU that has it, full precision on a CPU."""
    from accelerate import Accelerator

    on_gpu = device.type == "cuda"
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    return Accelerator(cpu=not on_gpu, mixed_precision="bf16" if bf16 else "no")


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


__all__ = ["TrainingArguments", "Trainer", "apply_overrides", "classification_metrics", "shuffled_by_class", "train_adapter"]
