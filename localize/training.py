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
import dataclasses
import functools
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from localize.activations import ActivationCache, get_activation_cache, pad_hidden
from localize.adapters import available_methods, get_method, make_method
from localize.adapters.base import apply_head, init_head
from localize.base_model import BaseModel, cpu_has_bf16_matrix_units
from localize.calibration import calibration_record, combined_share, fit_calibration, spread_evenly
from localize.engine import AdapterWeights, forward_pooled
from localize.recipes import DEFAULT_RECIPE, DEFAULT_RECIPE_METHOD
from localize.errors import ValidationError

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
CLASS_WEIGHTINGS = ("balanced", "sqrt", "none")
VALIDATION_SPLITS = ("by_text", "stratified")
STOPPING_METRICS = ("macro_f1", "loss")
LR_SCHEDULES = ("constant", "linear")
HEAD_FITS = ("map", "epochs")
MIXED_PRECISIONS = ("auto", "bf16", "no")
TRAIN_SCOPES = ("head", "all")
MAX_DECISION_OFFSET = 10.0  # on the logit scale: beyond it a label would never, or always, win
ALL_SITES = ["query", "key", "value", "attention_output", "intermediate", "output"]
# Options a method gets when the arguments name none (``method_options=None``); explicit ``{}`` means the
# method's own defaults. LoRA's are the default recipe's task-tuned encoder.
RECOMMENDED_OPTIONS: dict[str, dict[str, Any]] = {"lora": {"r": 8, "layers": [-4, -3, -2, -1], "sites": ALL_SITES}}
# How the recommended recipe's task prior trains (prior_* arguments left None); other recipes' priors train as
# their users do. Its validation loss over its few epochs falls, bottoms out and rises (MD-Agreement: .564 / .540 /
# .542 / .555), so the first rise ends it and the best epoch is kept: on MD one epoch in four is saved.
RECOMMENDED_PRIOR: dict[str, Any] = {"prior_max_epochs": 4, "prior_learning_rate": 2e-3, "prior_class_weighting": "sqrt",
                                     "prior_lr_schedule": "linear", "prior_patience": 1}


def recommended_options(method: str) -> dict[str, Any]:
    return json.loads(json.dumps(RECOMMENDED_OPTIONS.get(method, {})))  # a deep copy


@dataclass
class TrainingArguments:
    method: str = field(default="lora", metadata={"help": f"Adapter method, one of {available_methods()}, or "
                        f"{DEFAULT_RECIPE!r} (the default recipe, stored as its prior's method "
                        f"{DEFAULT_RECIPE_METHOD!r}). With train_scope=head it is the task prior's method; users fit "
                        "a head on the prior's encoding."})
    method_options: dict[str, Any] | None = field(default=None, metadata={"help": "The method's config fields; None "
                                                  "takes the recommended ones (lora: r=8 on all six linear maps of "
                                                  "the top four layers), {} the method's own defaults."})
    max_epochs: int = field(default=100, metadata={"help": "Upper bound; early stopping usually ends sooner."})
    batch_size: int = field(default=32, metadata={"help": "Rows per optimisation step."})
    learning_rate: float | None = field(default=None, metadata={"help": "None takes the method's default."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    validation_fraction: float = field(default=0.15, metadata={"help": "Share of labels held out for validation."})
    validation_split: str = field(default="by_text", metadata={"help": "by_text: a row is held out when its text's "
                                  "hash falls in the validation share, so a task prior and every user of the task "
                                  "hold out the same texts (a user never validates on a text the prior trained on) "
                                  "and retraining validates on the same rows; stratified: each class gives its share "
                                  "of rows, drawn by seed."})
    min_validation_rows: int = field(default=4, metadata={"help": "Below this many held-out rows, no early stopping."})
    patience: int = field(default=10, metadata={"help": "Epochs without a better validation macro-F1 before stopping."})
    last_epoch: int | None = field(default=None, metadata={"help": "Train no epoch past this one, the learning-rate "
                                   "schedule still spanning max_epochs (the run stops where a longer one would be); "
                                   "None: max_epochs."})
    early_stopping: str = field(default="macro_f1", metadata={"help": "What picks the best epoch: validation "
                                "macro_f1 (loss breaks ties) or loss (for soft targets, the label shares a task prior "
                                "learns, the loss is the proper score and far less noisy)."})
    lr_schedule: str = field(default="constant", metadata={"help": "constant, or linear: warm up over the first 6% "
                             "of max_epochs' steps, then decay to zero at the last."})
    class_weighting: str = field(default="sqrt", metadata={"help": "none, sqrt (inverse square root of the "
                                 "frequency) or balanced (inverse frequency: more minority recall, less accuracy)."})
    pooled_dropout: float = field(default=0.1, metadata={"help": "Dropout on the pooled embedding while training."})
    seed: int = field(default=0, metadata={"help": "Seeds a stratified split, the initialisation and the batch order."})
    force_activation: bool = field(default=False, metadata={"help": "Activate the new version even when it was "
                                   "scored on no validation rows or scores clearly below the active version (without "
                                   "it, such a version is kept inactive and the job says why)."})
    init_from_prior: bool = field(default=True, metadata={"help": "Start from the task prior when one exists."})
    train_scope: str | None = field(default=None, metadata={"help": "None: head for the recommended options of a "
                             "method (the default recipe), else all. head: a user trains only a linear classification "
                             "head, on the task prior's encoding (referenced, not copied) when there is a prior with "
                             "the same labels, else on the frozen base (the head method's own MLP, if any, trains "
                             "too); all: the user trains the method's parameters and the head, starting from the "
                             "prior of the same method when there is one. The prior itself always trains all."})
    head_fit: str = field(default="map", metadata={"help": "How a linear head-only user's head is fitted. map: "
                          "solved to convergence (L-BFGS) for the labels' cross-entropy plus head_prior_strength times "
                          "the squared distance from the task prior's head (no epochs, learning rate or early "
                          "stopping); epochs: AdamW epochs with early stopping on validation, as other methods train."})
    head_prior_strength: float = field(default=10.0, metadata={"help": "How strongly a MAP head is pulled toward the "
                                       "prior's head (toward zero without a prior): a Gaussian prior's precision, in "
                                       "units of one label's loss."})
    head_hidden: int = field(default=0, metadata={"help": "With train_scope=head: the width of a residual MLP in "
                             "the user's head in front of its linear map (0: linear). The MLP can express truths that "
                             "are interactions (gold and up is good for a gold bull), which a linear map cannot."})
    prior_max_epochs: int | None = field(default=None, metadata={"help": "Epoch cap for the task prior; None: the "
                                         "recommended recipe's (4), or max_epochs for other recipes."})
    prior_patience: int | None = field(default=None, metadata={"help": "Epochs without a lower validation loss "
                                       "before the task prior stops; None: the recommended recipe's (1), or "
                                       "patience."})
    prior_last_epoch: int | None = field(default=None, metadata={"help": "The task prior's last_epoch. The recipe "
                                         "choice sets it to the best epoch of the prior it trained on part of the "
                                         "texts, so the prior trained again on every text stops there instead of "
                                         "running an epoch past it to find it again; None: stop on validation loss."})
    prior_learning_rate: float | None = field(default=None, metadata={"help": "The task prior's learning rate; None: "
                                              "the recommended recipe's (2e-3), or learning_rate."})
    prior_class_weighting: str | None = field(default=None, metadata={"help": "The task prior's class weighting; "
                                              "None: the recommended recipe's (sqrt), or class_weighting."})
    prior_lr_schedule: str | None = field(default=None, metadata={"help": "The task prior's learning-rate schedule; "
                                          "None: the recommended recipe's (linear), or lr_schedule."})
    merge_duplicate_texts: bool = field(default=True, metadata={"help": "Rows that repeat a text (the task prior's "
                                        "pooled labels) train once, with each label's share as a soft target."})
    annotator_loss_weight: float = field(default=1.0, metadata={"help": "When the rows name who labelled them and "
                                         "there are several annotators (a task prior's pooled rows), each "
                                         "annotator's own labels train too, through that annotator's head (the "
                                         "shared head plus an offset, dropped after training), with this weight "
                                         "beside the loss on the label shares; 0: off. The tuned layers then learn "
                                         "an encoding in which every annotator's view is a linear map, which a "
                                         "user's linear head can express."})
    min_labels: int = field(default=4, metadata={"help": "Fewest labels a user needs to train."})
    calibrate: bool = field(default=True, metadata={"help": "Fit a temperature (folded into the head) and a uniform "
                            "share of probability (for labels the annotator gives inconsistently) on the validation "
                            "rows, so served probabilities are calibrated (the chosen labels never change); "
                            "the task prior is never rescaled (users' heads are pulled toward its head)."})
    temperature_scale: float = field(default=1.0, metadata={"help": "With calibrate: each version's fitted "
                                     "temperature is multiplied by this. Whole-task training measures it on texts "
                                     "no candidate trained, stopped or calibrated on (a version's own validation "
                                     "rows also chose its epoch, which can leave it surer than it should be) and "
                                     "stores it with the task's recipe; 1: no correction."})
    added_uniform_share: float = field(default=0.0, metadata={"help": "With calibrate: a uniform share spread over "
                                       "what each version's own fitted share leaves (measured with "
                                       "temperature_scale, on the task's pooled held-out rows: a few dozen "
                                       "validation rows rarely show how often an annotator contradicts "
                                       "themselves); 0: none."})
    decision_offsets: dict[str, float] | None = field(default=None, metadata={"help": "Added to each named "
                                    "label's served logit (after calibration, folded into the head's bias): a "
                                    "decision rule for the whole task, which whole-task training fits on texts no "
                                    "candidate trained or stopped on, where it raises the mean of per-user "
                                    "accuracy and macro-F1 beyond chance; None or {}: argmax of the calibrated "
                                    "probabilities."})
    mixed_precision: str = field(default="auto", metadata={"help": "auto: bfloat16 autocast on a GPU that has it, "
                                 "and on a CPU with bfloat16 matrix units (Intel AMX), float32 on other CPUs. bf16: "
                                 "on any CPU too. On a CPU, training steps that run encoder layers (a task prior, "
                                 "per-user LoRA) compute their linear maps in bfloat16 (weights, attention and the "
                                 "loss stay float32): about 15% less time per prior epoch with AMX, the same losses "
                                 "to three decimals. no: float32 everywhere. Validation, calibration and serving "
                                 "always compute in float32."})
    refit_on_all: bool | None = field(default=None, metadata={"help": "After validation, train the final adapter on "
                                      "the training and validation labels together (epoch training: from the start, "
                                      "for the epochs validation chose). None: yes for a MAP head (nothing is chosen "
                                      "on validation, and the solve takes milliseconds), no for epoch training."})

    def __post_init__(self) -> None:
        if self.method == DEFAULT_RECIPE:  # the default recipe by its name: heads on a task prior of this method
            self.method = DEFAULT_RECIPE_METHOD
        if self.method not in available_methods():
            raise ValueError(f"method {self.method!r} is not one of {[DEFAULT_RECIPE, *available_methods()]}")
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
            (self.validation_split in VALIDATION_SPLITS,
             f"validation_split={self.validation_split!r} must be one of {VALIDATION_SPLITS}"),
            (self.patience >= 1, f"patience={self.patience} must be >= 1"),
            (self.prior_patience is None or self.prior_patience >= 1,
             f"prior_patience={self.prior_patience} must be >= 1"),
            (self.last_epoch is None or self.last_epoch >= 1, f"last_epoch={self.last_epoch} must be >= 1"),
            (self.prior_last_epoch is None or self.prior_last_epoch >= 1,
             f"prior_last_epoch={self.prior_last_epoch} must be >= 1"),
            (self.early_stopping in STOPPING_METRICS,
             f"early_stopping={self.early_stopping!r} must be one of {STOPPING_METRICS}"),
            (self.lr_schedule in LR_SCHEDULES, f"lr_schedule={self.lr_schedule!r} must be one of {LR_SCHEDULES}"),
            (self.class_weighting in CLASS_WEIGHTINGS,
             f"class_weighting={self.class_weighting!r} must be one of {CLASS_WEIGHTINGS}"),
            (self.prior_class_weighting is None or self.prior_class_weighting in CLASS_WEIGHTINGS,
             f"prior_class_weighting={self.prior_class_weighting!r} must be one of {CLASS_WEIGHTINGS}"),
            (0 <= self.pooled_dropout < 1, f"pooled_dropout={self.pooled_dropout} must be in [0, 1)"),
            (self.head_fit in HEAD_FITS, f"head_fit={self.head_fit!r} must be one of {HEAD_FITS}"),
            (self.mixed_precision in MIXED_PRECISIONS,
             f"mixed_precision={self.mixed_precision!r} must be one of {MIXED_PRECISIONS}"),
            (0.05 <= self.temperature_scale <= 20, f"temperature_scale={self.temperature_scale} must be in [0.05, 20]"),
            (0 <= self.added_uniform_share < 1, f"added_uniform_share={self.added_uniform_share} must be in [0, 1)"),
            (self.decision_offsets is None or all(
                isinstance(label, str) and isinstance(value, (int, float)) and math.isfinite(value)
                and abs(value) <= MAX_DECISION_OFFSET for label, value in self.decision_offsets.items()),
             f"decision_offsets={self.decision_offsets!r} must map label names to numbers in "
             f"[-{MAX_DECISION_OFFSET:g}, {MAX_DECISION_OFFSET:g}]"),
            (self.head_prior_strength >= 0, f"head_prior_strength={self.head_prior_strength} must be >= 0"),
            (0 <= self.head_hidden <= 8192, f"head_hidden={self.head_hidden} must be in 0..8192"),
            (self.annotator_loss_weight >= 0, f"annotator_loss_weight={self.annotator_loss_weight} must be >= 0"),
            (self.min_labels >= 2, f"min_labels={self.min_labels} must be >= 2"),
            (self.train_scope in TRAIN_SCOPES, f"train_scope={self.train_scope!r} must be one of {TRAIN_SCOPES}"),
            (self.prior_lr_schedule is None or self.prior_lr_schedule in LR_SCHEDULES,
             f"prior_lr_schedule={self.prior_lr_schedule!r} must be one of {LR_SCHEDULES}"),
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
        learning rate and class weighting, and stopping on validation loss (a prior learns label shares and every
        annotator's labels: distributions, for which the loss is the proper score)."""
        user_only = {name: TrainingArguments.__dataclass_fields__[name].default
                     for name in ("head_fit", "head_prior_strength", "head_hidden", "temperature_scale",
                                  "added_uniform_share", "decision_offsets")}  # how users fit heads on it
        return dataclasses.replace(self, train_scope="all", init_from_prior=False, early_stopping="loss", **user_only,
                                   calibrate=False, patience=self.prior_patience or self.patience,
                                   max_epochs=self.prior_max_epochs or self.max_epochs,
                                   last_epoch=self.prior_last_epoch,
                                   learning_rate=self.prior_learning_rate or self.learning_rate,
                                   class_weighting=self.prior_class_weighting or self.class_weighting,
                                   lr_schedule=self.prior_lr_schedule or self.lr_schedule)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrainingArguments:
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training argument(s) {unknown}; known: {sorted(known)}")
        from pydantic import ValidationError as PydanticValidationError

        try:  # types first, so {"max_epochs": "many"} is named, not a TypeError from a comparison
            return _arguments_adapter(cls).validate_python(values, strict=False)
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


@functools.cache
def _arguments_adapter(cls: type) -> Any:
    """pydantic's validator of ``cls``: built once (20 ms), not once per job."""
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


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
            self.texts, self.targets, self.soft_targets = _merge_duplicates(texts, self.targets, len(self.label_set))
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
            both = _concat(self.train_split, self.val_split)
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

    def _solve_map_head(self, split: _Split, center: dict[str, torch.Tensor], class_weights: torch.Tensor | None) -> None:
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

    def _refit_epochs(self, split: _Split, epochs: int) -> None:
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

    def _epoch(self, split: _Split, optimizer: torch.optim.Optimizer, accelerator: Any,
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

    def _autocast(self, split: _Split, accelerator: Any) -> contextlib.AbstractContextManager:
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

    def _batches(self, split: _Split, rng: random.Random) -> list[list[int]]:
        """One epoch's batches in random order. Rows that run encoder layers are grouped by length within windows
        of 50 batches (as transformers' ``group_by_length``), so little time goes to padding."""
        size = self.args.batch_size
        order = list(range(len(split.texts)))
        rng.shuffle(order)
        lengths = _row_lengths(split)
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
        if self.args.validation_split == "by_text":
            val = {i for i, text in enumerate(self.texts) if held_out_text(text, self.args.validation_fraction)}
            # A class whose every row would be held out trains on them instead: a model must see each class.
            trained = {self.targets[i] for i in range(rows) if i not in val}
            val = sorted(i for i in val if self.targets[i] in trained)
            if len(val) < self.args.min_validation_rows or rows - len(val) < 2:
                return list(range(rows)), []
            held = set(val)
            return [i for i in range(rows) if i not in held], val
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

    def _class_weights(self, split: _Split | None = None) -> torch.Tensor | None:
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
    def _loss_targets(split: _Split, batch: list[int] | slice) -> torch.Tensor:
        return split.soft[batch] if split.soft is not None else split.targets[batch]

    def _annotator_loss(self, pooled: torch.Tensor, texts: list[str], class_weights: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy of every label the batch's texts were given, under its annotator's own head."""
        pairs = [(row, who, target) for row, text in enumerate(texts) for who, target in self.annotations[text]]
        rows, who, targets = (torch.tensor(column, device=pooled.device) for column in zip(*pairs))
        weight = self.head["weight"] + self.annotator_offsets["weight"][who]
        bias = self.head["bias"] + self.annotator_offsets["bias"][who]
        return F.cross_entropy(apply_head(pooled[rows], weight, bias).float(), targets, weight=class_weights)

    def _logits(self, split: _Split, batch: list[int], *, training: bool) -> torch.Tensor:
        return apply_head(self._pooled(split, batch, training=training), self.head["weight"], self.head["bias"])

    def _pooled(self, split: _Split, batch: list[int], *, training: bool) -> torch.Tensor:
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

    def _score(self, split: _Split, class_weights: torch.Tensor | None) -> dict[str, float]:
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

    def _all_logits(self, split: _Split) -> torch.Tensor:
        return apply_head(self._all_pooled(split), self.head["weight"], self.head["bias"])

    def _all_pooled(self, split: _Split) -> torch.Tensor:
        """Every row's pooled vector, in the split's order. Rows that run encoder layers go in chunks of similar
        length: in the split's order a chunk pads to its longest row, about three times the work on tweets."""
        rows = len(split.texts)
        if not rows:
            return torch.empty(0, self.base.dims.hidden_size, device=self.base.device)
        lengths = _row_lengths(split)
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


def _row_lengths(split: _Split) -> list[int] | None:
    """Tokens per row of a split whose rows run encoder layers; None for pooled rows (nothing to pad)."""
    if split.input_ids is not None:
        return [len(ids) for ids in split.input_ids]
    if split.inputs and split.inputs[0].dim() == 2:  # [tokens, hidden] per row (pooled rows are 1-D)
        return [row.shape[0] for row in split.inputs]
    return None


def solve_map_head(
    inputs: torch.Tensor, targets: torch.Tensor, center: dict[str, torch.Tensor], *, strength: float,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear head's maximum a posteriori fit on ``inputs [rows, hidden]``: the labels' (class-weighted)
    cross-entropy plus ``strength`` times the squared distance of the weights from ``center`` (the prior's head), solved
    to convergence by L-BFGS. No epochs, no learning rate, no validation noise: the more labels a user has, the
    further their head moves from the task's. Returns ``(weight [labels, hidden], bias [labels])``."""
    weight = center["weight"].detach().clone().requires_grad_(True)
    bias = center["bias"].detach().clone().requires_grad_(True)
    rows = len(inputs)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=500, tolerance_grad=1e-7,
                                  tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        data = F.cross_entropy(apply_head(inputs, weight, bias), targets, weight=class_weights, reduction="sum")
        loss = (data + strength * (weight - center["weight"]).pow(2).sum()) / rows
        loss.backward()
        return loss

    optimizer.step(objective)
    return weight.detach(), bias.detach()


def class_weights_for(counts: np.ndarray, weighting: str) -> np.ndarray | None:
    """Per-label loss weights from label counts: ``none``, ``sqrt`` (inverse square root of the frequency) or
    ``balanced`` (inverse frequency); absent labels weigh 0."""
    if weighting == "none":
        return None
    present = counts > 0
    weights = np.zeros_like(counts, dtype=float)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return np.sqrt(weights) if weighting == "sqrt" else weights


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


def held_out_text(text: str, fraction: float) -> bool:
    """Whether a ``by_text`` split holds ``text`` out for validation: a fixed function of the text alone (no seed),
    so every trainer of a task, prior and users alike, holds out the same texts."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=b"localize-val").digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


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


__all__ = ["TrainingArguments", "Trainer", "apply_overrides", "class_weights_for", "classification_metrics",
           "format_duration", "held_out_text", "shuffled_by_class", "solve_map_head", "train_adapter"]
