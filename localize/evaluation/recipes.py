"""The recipes a report compares. The first is the default: what ``localize train`` does without ``--method``.

Recipes that run the encoder per user (LoRA, IA3, prompts, prefixes) cost seconds per epoch on a CPU, so the
report runs them on the first ``SUBSET_USERS`` users by id with fewer epochs; their rows say so.
"""
from __future__ import annotations

from localize.evaluation.harness import Recipe
from localize.training import TrainingArguments

SUBSET_USERS = 8
SUBSET_EPOCHS = {"max_epochs": 12, "patience": 4}


def default_arguments(default_method: str | None = None) -> TrainingArguments:
    """The default recipe: the settings' default method with every default training argument."""
    return TrainingArguments(method=default_method) if default_method else TrainingArguments()


def default_recipe(default_method: str | None = None) -> Recipe:
    args = default_arguments(default_method)
    return Recipe(f"default ({args.method}{' + prior' if args.init_from_prior else ''})", args,
                  "what `localize train` does without --method")


def _args(method: str, prior: bool, **kw) -> TrainingArguments:
    options = kw.pop("options", {})
    return TrainingArguments(method=method, method_options=options, init_from_prior=prior, **kw)


def comparison_recipes(default_method: str | None = None, *, subset_users: int = SUBSET_USERS) -> list[Recipe]:
    """The default first, then each registered method with and without the prior, and variants."""
    recipes = [default_recipe(default_method)]
    for prior in (True, False):
        tag = " + prior" if prior else ""
        recipes += [
            Recipe(f"head mlp256{tag}", _args("head", prior), "residual MLP (256) + linear head on the pooled embedding"),
            Recipe(f"head mlp64{tag}", _args("head", prior, options={"hidden": 64}), "residual MLP (64) + linear head"),
            Recipe(f"head linear{tag}", _args("head", prior, options={"hidden": 0}), "linear head only"),
        ]
    expensive = [
        ("lora r8 q,v all layers", "lora", {}),
        ("lora r4 q,v top 2 layers", "lora", {"r": 4, "layers": [-2, -1]}),
        ("lora r16 q,v top 2 layers", "lora", {"r": 16, "layers": [-2, -1]}),
        ("ia3 all layers", "ia3", {}),
        ("ia3 top 2 layers", "ia3", {"layers": [-2, -1]}),
        ("prompt tuning 8 tokens", "prompt_tuning", {}),
        ("prefix (P-tuning v2) 8 x all layers", "prefix_tuning", {}),
        ("prefix 8 x top 2 layers", "prefix_tuning", {"layers": [-2, -1]}),
        ("prefix 16 x top 2 layers", "prefix_tuning", {"num_virtual_tokens": 16, "layers": [-2, -1]}),
    ]
    for name, method, options in expensive:
        recipes.append(Recipe(name, _args(method, False, options=options, **SUBSET_EPOCHS),
                              f"first {subset_users} users, max {SUBSET_EPOCHS['max_epochs']} epochs",
                              max_users=subset_users))
    return recipes
