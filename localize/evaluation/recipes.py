"""The recipes a report compares. The first is the default: what ``localize train`` does without ``--method``.

Head variants cost about a second per user, so they run on the first ``VARIANT_USERS`` users by id (all of a
smaller data set). Methods that run the encoder per user (LoRA, IA3, prompts, prefixes) cost minutes per user on
a CPU; they run only with ``encoder_methods=True`` (``localize eval --report --all-methods``), on the first
``ENCODER_METHOD_USERS`` users with fewer epochs, and their rows say so.
"""
from __future__ import annotations

from typing import Any

from localize.evaluation.harness import Recipe
from localize.training import TrainingArguments

VARIANT_USERS = 16
ENCODER_METHOD_USERS = 8
ENCODER_METHOD_EPOCHS = {"max_epochs": 8, "patience": 3, "prior_max_epochs": 3}


def default_arguments(default_method: str | None = None) -> TrainingArguments:
    """The default recipe: the settings' default method with every default training argument."""
    return TrainingArguments(method=default_method) if default_method else TrainingArguments()


def default_recipe(default_method: str | None = None) -> Recipe:
    args = default_arguments(default_method)
    if args.train_scope == "head" and args.init_from_prior:
        what = f"head on the {args.method} task prior"
    else:
        what = f"{args.method}{' + prior' if args.init_from_prior else ''}"
    return Recipe(f"default ({what})", args, "what `localize train` does without --method")


def _args(method: str, prior: bool, options: dict[str, Any] | None = None, **kw: Any) -> TrainingArguments:
    return TrainingArguments(method=method, method_options=options or {}, init_from_prior=prior, **kw)


def head_variants() -> list[tuple[str, TrainingArguments, str]]:
    """Head recipes on the frozen base, besides the default (a linear head on the task prior's tuned layers)."""
    return [
        ("head linear", _args("head", False), "no task prior"),
        ("head linear + prior, balanced weights", _args("head", True, class_weighting="balanced"),
         "inverse-frequency class weights"),
        ("head linear + prior, sqrt weights", _args("head", True, class_weighting="sqrt"),
         "the previous default: inverse-square-root class weights"),
        ("head mlp256 + prior, balanced weights", _args("head", True, {"hidden": 256}, class_weighting="balanced"),
         "the previous default: residual MLP (256) + linear head, trained whole"),
        ("head mlp256 + prior", _args("head", True, {"hidden": 256}), "residual MLP (256) + linear head"),
        ("head mlp256 + prior, head only", _args("head", True, {"hidden": 256}, train_scope="head"),
         "the prior's MLP kept, only the user's linear head trained"),
    ]


def encoder_method_variants() -> list[tuple[str, TrainingArguments, str]]:
    sites_all = ["query", "key", "value", "attention_output", "intermediate", "output"]
    variants = []
    for prior in (False, True):
        tag = " + prior" if prior else ""
        variants += [
            (f"lora r8 q,v all layers{tag}", _args("lora", prior, **ENCODER_METHOD_EPOCHS), ""),
            (f"lora r4 q,v top 2 layers{tag}", _args("lora", prior, {"r": 4, "layers": [-2, -1]},
                                                     **ENCODER_METHOD_EPOCHS), ""),
            (f"ia3 all layers{tag}", _args("ia3", prior, **ENCODER_METHOD_EPOCHS), ""),
            (f"prompt tuning 8 tokens{tag}", _args("prompt_tuning", prior, **ENCODER_METHOD_EPOCHS), ""),
            (f"prefix 8 x all layers{tag}", _args("prefix_tuning", prior, **ENCODER_METHOD_EPOCHS), ""),
            (f"prefix 8 x top 2 layers{tag}", _args("prefix_tuning", prior, {"layers": [-2, -1]},
                                                    **ENCODER_METHOD_EPOCHS), ""),
        ]
    variants += [
        ("lora r16 q,v top 2 layers", _args("lora", False, {"r": 16, "layers": [-2, -1]}, **ENCODER_METHOD_EPOCHS), ""),
        ("prefix 16 x top 2 layers", _args("prefix_tuning", False, {"num_virtual_tokens": 16, "layers": [-2, -1]},
                                           **ENCODER_METHOD_EPOCHS), ""),
        ("task-tuned top 2 layers (lora r8, all sites) + prior, head only",
         _args("lora", True, {"layers": [-2, -1], "sites": sites_all}, train_scope="head", learning_rate=1e-3,
               **{**ENCODER_METHOD_EPOCHS, "prior_max_epochs": 4}),
         "the prior tunes the top two layers on pooled soft labels; users train only their head on them"),
    ]
    return variants


def comparison_recipes(
    default_method: str | None = None,
    *,
    variant_users: int = VARIANT_USERS,
    encoder_methods: bool = False,
    encoder_method_users: int = ENCODER_METHOD_USERS,
) -> list[Recipe]:
    """The default first (every user), then the head variants and, optionally, the encoder methods."""
    default = default_recipe(default_method)
    recipes = [default]
    for name, args, description in head_variants():
        if args != default.args:
            recipes.append(Recipe(name, args, f"{description}; first {variant_users} users", max_users=variant_users))
    if encoder_methods:
        epochs = ENCODER_METHOD_EPOCHS
        for name, args, description in encoder_method_variants():
            recipes.append(Recipe(name, args, (description + "; " if description else "")
                                  + f"first {encoder_method_users} users, max {epochs['max_epochs']} epochs "
                                  f"(prior {epochs['prior_max_epochs']})", max_users=encoder_method_users))
    return recipes
