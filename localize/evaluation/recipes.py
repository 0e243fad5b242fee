"""The recipes a report compares. The first is the default: what ``localize train`` does without ``--method``.

Head variants cost about a second per user, so they run on the first ``VARIANT_USERS`` users by id (all of a
smaller data set). Methods that run the encoder per user (LoRA, IA3, prompts, prefixes) cost minutes per user on
a CPU; they run only with ``encoder_methods=True`` (``localize eval --report --all-methods``), on the first
``ENCODER_METHOD_USERS`` users with fewer epochs, and their rows say so.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from localize.evaluation.harness import Recipe
from localize.training_args import ALL_SITES, TrainingArguments

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
    """Variants of the default recipe: its users' heads fitted otherwise (on the same task prior), and the prior
    trained otherwise (each such prior trains once more on every pooled row)."""
    default = TrainingArguments()
    previous_prior = {"method_options": {"r": 8, "layers": [-2, -1], "sites": ALL_SITES}, "train_scope": "head",
                      "prior_max_epochs": 3, "prior_learning_rate": 1e-3, "prior_class_weighting": "sqrt",
                      "prior_lr_schedule": "constant", "annotator_loss_weight": 0.0}
    return [
        ("MAP head, no class weights", replace(default, class_weighting="none"),
         "the default's users without square-root class weights"),
        ("MAP head, balanced weights", replace(default, class_weighting="balanced"),
         "inverse-frequency class weights"),
        ("MAP head, strength 3", replace(default, head_prior_strength=3.0), "a weaker pull toward the prior's head"),
        ("MAP head, strength 30", replace(default, head_prior_strength=30.0), "a stronger pull toward the prior's head"),
        ("head by epochs, no class weights", replace(default, head_fit="epochs", class_weighting="none"),
         "the previous default's users: AdamW epochs, early stopping on validation macro-F1"),
        ("MLP-256 head by epochs", replace(default, head_hidden=256), "a residual MLP in front of each user's head"),
        ("linear head, no prior", replace(default, init_from_prior=False),
         "a MAP head on the frozen base (pulled toward zero): per-user logistic regression"),
        ("prior without annotator heads", replace(default, annotator_loss_weight=0.0),
         "the prior learns only the label shares"),
        ("previous default", TrainingArguments(**previous_prior, head_fit="epochs", class_weighting="none"),
         "prior: LoRA on the top two layers, 3 epochs at 1e-3, label shares only; users: heads by epochs, no weights"),
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
