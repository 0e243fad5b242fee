"""Names for what a training job runs, and the training arguments that apply to it.

The default recipe is ``prior-head``: a task prior (a LoRA on the base's top four layers, trained on every user's
labels) and, per user, a linear head fitted by maximum a posteriori (L-BFGS, pulled toward the prior's head) on
the prior's encoding. Its jobs store ``method="lora"`` (the prior's method): the recipe name says what runs.
Nothing here imports torch."""
from __future__ import annotations

from typing import Any

DEFAULT_RECIPE = "prior-head"
DEFAULT_RECIPE_METHOD = "lora"  # the task prior's adapter method in the default recipe

# Arguments read only while epochs run (AdamW, early stopping); a MAP head has none.
_EPOCH_ARGUMENTS = ("max_epochs", "last_epoch", "batch_size", "learning_rate", "weight_decay", "patience",
                    "early_stopping", "lr_schedule", "pooled_dropout", "min_validation_rows")
# Arguments of the task prior's own training; users' jobs only read the prior it left.
_PRIOR_ARGUMENTS = ("prior_max_epochs", "prior_patience", "prior_last_epoch", "prior_learning_rate",
                    "prior_class_weighting", "prior_lr_schedule",
                    "merge_duplicate_texts", "annotator_loss_weight")
# How users fit a head on the prior; a prior's own job ignores them.
_HEAD_ARGUMENTS = ("head_fit", "head_prior_strength", "head_hidden", "head_ensemble")


# A job's stored arguments may name no recipe but where to find one: ``{"recipe": "task"}`` trains with the task's
# recipe as it stands when the job runs (chosen or pinned); ``{"recipe": "choose"}`` is whole-task training's
# choice, which trains the candidates, stores the winner on the task and registers its task prior.
TASK_RECIPE, CHOOSE_RECIPE = "task", "choose"


class TaskRecipe:
    """Job arguments that defer to the task's recipe; ``to_dict`` is what the job stores."""

    def __init__(self, *, choose: bool = False, force_activation: bool = False,
                 default_method: str | None = None) -> None:
        """``default_method``: what the job trains with when the task has no recipe yet (the settings' default)."""
        self.choose, self.force_activation, self.default_method = choose, force_activation, default_method

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": CHOOSE_RECIPE if self.choose else TASK_RECIPE,
                **({"force_activation": True} if self.force_activation else {}),
                **({"method": self.default_method} if self.default_method else {})}


def defers_to_task(args: dict[str, Any] | None) -> bool:
    return bool(args) and args.get("recipe") in (TASK_RECIPE, CHOOSE_RECIPE)


def is_map_head(args: dict[str, Any]) -> bool:
    # An MLP in front of the head (head_hidden) always trains by AdamW epochs, whatever head_fit says.
    return args.get("train_scope") == "head" and args.get("head_fit", "map") == "map" and not args.get("head_hidden")


def recipe_name(args: dict[str, Any], *, prior: bool = False) -> str:
    """``prior-head`` for the default recipe's users, ``prior-head (task prior: lora)`` for its prior, ``prior-mlp``
    for MLP heads on the prior, else the adapter method, with what sets it apart (``lora + prior``, ``head by epochs
    on the task prior``)."""
    if args.get("recipe") == CHOOSE_RECIPE:
        return "the recipe chosen on the task's labels"
    if args.get("recipe") == TASK_RECIPE:
        return "the task's recipe"
    name = _recipe_name(args, prior=prior)
    members = args.get("prior_members", 1)
    return f"{name}, {members} task priors side by side" if members > 1 else name


def _recipe_name(args: dict[str, Any], *, prior: bool) -> str:
    method = args.get("method", "?")
    if args.get("train_scope") == "head" and args.get("head_hidden"):
        name = "prior-mlp" if args.get("init_from_prior", True) else "MLP head on the frozen base"
        if args.get("head_ensemble", 1) > 1 and not prior:
            name += f" ({args['head_ensemble']} heads averaged)"
        return f"{name} (task prior: {method})" if prior else name
    if args.get("train_scope") == "head":
        if prior:
            return f"{DEFAULT_RECIPE} (task prior: {method})" if is_map_head(args) else f"task prior: {method}"
        on = "on the task prior" if args.get("init_from_prior", True) else "on the frozen base"
        if is_map_head(args):
            return DEFAULT_RECIPE if args.get("init_from_prior", True) else f"MAP head {on}"
        return f"head by epochs {on}"
    if prior:
        return f"task prior: {method}"
    return f"{method} + prior" if args.get("init_from_prior") else method


def applicable_arguments(args: dict[str, Any], *, prior: bool = False) -> dict[str, Any]:
    """``args`` without those the job's recipe never reads: a MAP head has no epochs, a user's job does not train
    the prior, a prior does not fit users' heads, and only a head-only recipe fits a head at all."""
    drop: set[str] = set()
    if prior or not args.get("calibrate", True):
        drop.update(("temperature_scale", "added_uniform_share"))  # a prior is never calibrated
    if prior:
        drop.add("decision_offsets")  # users' heads decide; a prior's head is only where they start
        drop.update(_HEAD_ARGUMENTS)
        if args.get("train_scope") == "head":
            # The prior_* arguments replace these.
            drop.update(("max_epochs", "last_epoch", "learning_rate", "class_weighting", "lr_schedule"))
    else:
        drop.update(_PRIOR_ARGUMENTS)
        if is_map_head(args):
            drop.update(_EPOCH_ARGUMENTS)
        if args.get("train_scope") != "head":
            drop.update(_HEAD_ARGUMENTS)
        if args.get("train_scope") == "head":
            drop.add("method_options")  # the prior's; a user's head has none of its own
    if not args.get("force_activation"):
        drop.add("force_activation")
    return {key: value for key, value in args.items() if key not in drop}


def describe_decision_rule(candidate: dict[str, Any]) -> str:
    """What the choice's decision rule is for ``candidate`` (a choice record's candidate), in one sentence."""
    gain, t = candidate.get("decision_gain"), candidate.get("decision_gain_t")
    if gain is None:
        return ""
    evidence = (f"{gain:+.4f} in the mean of accuracy and macro-F1 per user, on users they were not fitted on"
                + (f" ({t:.1f} standard errors)" if t is not None else ""))
    offsets = candidate.get("decision_offsets") or {}
    if offsets:
        named = ", ".join(f"{label} {value:+.2f}" for label, value in offsets.items())
        return (f"Decision rule: logit offsets {named} added to every user's calibrated logits; on the held-out "
                f"rows they gained {evidence}.")
    return (f"Decision rule: the most probable label; the best logit offsets on the held-out rows gained "
            f"{evidence}: not beyond chance, so none are used.")
