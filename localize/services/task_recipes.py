"""A task's recipe: the one whole-task training chose on the task's own labels, or one an admin pinned.

``task.recipe`` holds ``{"recipe", "args", "pinned", "choice"}``: the recipe users train with, its training
arguments, whether an admin pinned it, and the last choice (every candidate's validation figures and seconds).
Jobs queued without arguments of their own (``{"recipe": "task"}``) read it when they run, so a user's retrain
uses the task's recipe even when the choice finished after the job was queued.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import Session

from localize.db.models import Task
from localize.errors import ValidationError
from localize.recipes import DEFAULT_RECIPE

if TYPE_CHECKING:
    from localize.engine import AdapterWeights
    from localize.runtime import Runtime
    from localize.training_args import TrainingArguments


def recipe_names() -> list[str]:
    from localize.recipe_candidates import candidate_recipes

    return [candidate.name for candidate in candidate_recipes()]


def task_arguments(task: Task, default_method: str | None = None) -> TrainingArguments:
    """The training arguments of the task's recipe: pinned or chosen, else ``default_method``'s (the settings'
    default method; the default recipe without one)."""
    from localize.training_args import TrainingArguments

    if task.recipe and task.recipe.get("args"):
        return TrainingArguments.from_dict(task.recipe["args"])
    return TrainingArguments(method=default_method) if default_method else TrainingArguments()


def task_recipe_name(task: Task) -> str:
    return (task.recipe or {}).get("recipe", DEFAULT_RECIPE)


def job_arguments(task: Task, stored: dict[str, Any] | None) -> TrainingArguments:
    """What a job trains with: its own arguments, or (``{"recipe": "task"}``) the task's recipe now."""
    import dataclasses

    from localize.training_args import TrainingArguments

    stored = dict(stored or {})
    if stored.get("recipe") in ("task", "choose"):
        return dataclasses.replace(task_arguments(task, stored.get("method")),
                                   force_activation=bool(stored.get("force_activation")))
    return TrainingArguments.from_dict(stored)


def pin_recipe(*, session: Session, task: Task, name: str | None) -> Task:
    """Pins ``name`` (one of the candidates) as the task's recipe; ``None`` unpins, so the next whole-task training
    chooses again (until then the pinned recipe stays in use)."""
    from localize.recipe_candidates import candidate_named

    current = dict(task.recipe or {})
    if name is None:
        current["pinned"] = False
    else:
        try:
            candidate = candidate_named(name)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        args = candidate.args.to_dict()
        # What the last choice measured for this recipe comes with it: its calibration correction, its decision
        # rule, and the epoch its task prior stopped at.
        measured = next((c for c in (current.get("choice") or {}).get("candidates", []) if c["name"] == name), {})
        if measured.get("held_out_ece") is not None:
            args.update(temperature_scale=measured["temperature_scale"],
                        added_uniform_share=measured["added_uniform_share"])
        if measured.get("decision_offsets"):
            args.update(decision_offsets=measured["decision_offsets"])
        if measured.get("prior_last_epoch") is not None:
            args.update(prior_last_epoch=measured["prior_last_epoch"])
        current.update(recipe=candidate.name, args=args, pinned=True, pinned_at=_now())
    task.recipe = current
    flag_modified(task, "recipe")
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def is_pinned(task: Task) -> bool:
    return bool((task.recipe or {}).get("pinned"))


def record_choice(*, session: Session, task: Task, choice: dict[str, Any]) -> None:
    """Stores a finished choice on the task (the caller commits). A pinned recipe stays the one in use."""
    current = dict(task.recipe or {})
    current["choice"] = {**choice, "chosen_at": _now()}
    if not current.get("pinned"):
        current.update(recipe=choice["recipe"], args=choice["args"], pinned=False)
    task.recipe = current
    flag_modified(task, "recipe")
    session.add(task)


def run_choice(
    runtime: Runtime, task: Task, texts: list[str], labels: list[str], annotators: list[str],
    progress: Callable[[float, str], None],
) -> tuple[AdapterWeights | None, TrainingArguments, dict[str, Any]]:
    """Chooses the task's recipe on its pooled labels; returns the winner's task prior (trained again on every
    text once the choice is made), the winner's arguments and the choice's record."""
    from localize.recipe_candidates import configured_candidates
    from localize.recipe_choice import Row, choose_recipe, final_prior_note
    from localize.training import Trainer

    started = time.perf_counter()
    rows = [Row(user, text, label) for user, text, label in zip(annotators, texts, labels)]
    try:
        candidates = configured_candidates(runtime.settings.recipe_candidates,
                                           runtime.settings.stacked_priors_max_labels)
    except ValueError as error:
        raise ValidationError(f"setting recipe_candidates: {error}") from None
    choice = choose_recipe(runtime.base, rows, list(task.labels), candidates=candidates,
                           cache=runtime.activation_cache, progress=lambda message: progress(0.0, message))
    args = choice.winner_args
    record = choice.to_dict()
    prior = None
    if args.init_from_prior:
        progress(0.0, f"{choice.winner} chosen; training its task prior on all {len(texts):,} labels")
        prior = Trainer(runtime.base, args.for_prior(), texts, labels, list(task.labels),
                        cache=runtime.activation_cache, annotators=annotators,
                        progress=lambda fraction, message: progress(0.0, f"task prior, {message}")).train()
        record["prior"] = final_prior_note(args)
        if args.train_scope == "head" and prior.params:
            # Every user's job reads the new prior's encoding of their texts (as the trainer's encoder): computed
            # here once, in large batches sorted by length, rather than a few dozen texts in each user's job.
            distinct = sorted(set(texts))
            runtime.activation_cache.encoded(
                runtime.base, prior, distinct,
                progress=lambda done, total: progress(0.0, f"encoding {done:,}/{total:,} texts with the task prior"))
    record["seconds"] = time.perf_counter() - started
    return prior, args, record


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
