"""How one training run is set: :class:`TrainingArguments` (every field with its help, validated on creation and
when read from JSON), the recommended options of each method and of the default recipe's task prior, and
``key=value`` overrides as the CLI takes them. The trainer that reads them is in ``localize.training``."""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localize.adapters import available_methods, get_method
from localize.adapters.lora_stack import MAX_MEMBERS
from localize.recipes import DEFAULT_RECIPE, DEFAULT_RECIPE_METHOD

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
    head_ensemble: int = field(default=1, metadata={"help": "With head_hidden: how many MLP heads to train, from "
                               "seeds seed, seed+1, ... on the same rows, served as one whose logits are their mean "
                               "(one MLP as many times as wide: no cost at serving). Averaging removes much of an "
                               "early-stopped head's luck of the seed; training costs that many heads. 1: one head."})
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
    prior_members: int = field(default=1, metadata={"help": "How many task priors are trained, from seeds seed, "
                               "seed + 1, ..., and served side by side (a LoRA stack): each user's head reads all "
                               "of them and answers with the mean of the heads it would have on each, which removes "
                               "much of one prior's seed-to-seed luck. Costs the prior's training and its tuned "
                               "layers at serving that many times; 1: one prior. Needs a LoRA prior."})
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
                                 "and on a CPU that computes bfloat16 in hardware (Intel AMX, AVX512-BF16), float32 "
                                 "on other CPUs. bf16: on any CPU too. On a CPU, training steps that run encoder "
                                 "layers (a task prior, per-user LoRA) compute their linear maps in bfloat16 "
                                 "(weights, attention and the loss stay float32): 15-30% less time per prior epoch, "
                                 "the same losses to three decimals (localize bench --only prior_precision). no: "
                                 "float32 everywhere. Validation, calibration and serving always compute in "
                                 "float32."})
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
            (1 <= self.head_ensemble <= 16, f"head_ensemble={self.head_ensemble} must be in 1..16"),
            (not (self.method == "head" and self.head_hidden and (self.method_options or {}).get("hidden")
                  not in (None, self.head_hidden)),
             f"method_options hidden={(self.method_options or {}).get('hidden')} and head_hidden={self.head_hidden} "
             "both name the head's MLP width: give one"),
            (self.head_ensemble == 1 or (self.head_hidden > 0 and self.train_scope == "head"),
             f"head_ensemble={self.head_ensemble} averages MLP heads: it needs train_scope='head' and head_hidden > 0 "
             f"(got train_scope={self.train_scope!r}, head_hidden={self.head_hidden})"),
            (self.annotator_loss_weight >= 0, f"annotator_loss_weight={self.annotator_loss_weight} must be >= 0"),
            (self.min_labels >= 2, f"min_labels={self.min_labels} must be >= 2"),
            (self.train_scope in TRAIN_SCOPES, f"train_scope={self.train_scope!r} must be one of {TRAIN_SCOPES}"),
            (self.prior_lr_schedule is None or self.prior_lr_schedule in LR_SCHEDULES,
             f"prior_lr_schedule={self.prior_lr_schedule!r} must be one of {LR_SCHEDULES}"),
            (self.prior_learning_rate is None or self.prior_learning_rate > 0,
             f"prior_learning_rate={self.prior_learning_rate} must be > 0"),
            (self.prior_max_epochs is None or self.prior_max_epochs >= 1,
             f"prior_max_epochs={self.prior_max_epochs} must be >= 1"),
            (1 <= self.prior_members <= MAX_MEMBERS, f"prior_members={self.prior_members} must be in 1..{MAX_MEMBERS}"),
            (self.prior_members == 1 or self.method == "lora",
             f"prior_members={self.prior_members} stacks LoRA task priors; method {self.method!r} is not LoRA"),
            (self.prior_members == 1 or self.train_scope == "head",
             f"prior_members={self.prior_members} fits users' heads on task priors side by side: it needs "
             f"train_scope='head', not {self.train_scope!r} (a user's own LoRA tunes the layers of one prior)"),
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
                     for name in ("head_fit", "head_prior_strength", "head_hidden", "head_ensemble",
                                  "temperature_scale", "added_uniform_share", "decision_offsets")}  # users' heads
        if self.prior_members > 1:  # the priors side by side: their LoRA options, as a stack's
            user_only.update(method="lora_stack", method_options={**self.method_options, "members": self.prior_members},
                             prior_members=1)
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
