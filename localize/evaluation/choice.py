"""The recipe ``localize eval`` scores by default: the one whole-task training would choose on the data set's train
rows (``localize.recipe_choice``, the code the training job runs), trained on them as production trains it."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from localize.evaluation.harness import Harness, Recipe
from localize.recipe_candidates import candidate_recipes, configured_candidates
from localize.recipe_choice import Row, choose_recipe, final_prior_note
from localize.settings import get_settings


def choose_for(harness: Harness, *, progress: Callable[[str], None] = lambda message: None) -> tuple[Recipe, dict]:
    """The chosen recipe (its prior trained again on every train text, as production trains it) and the choice's
    record. Test rows play no part: the choice sees every user's train rows only."""
    rows = [Row(r.user, r.text, r.label) for r in harness.data.train]
    choice = choose_recipe(harness.base, rows, harness.data.labels, cache=harness.cache,
                           candidates=configured_candidates(get_settings().recipe_candidates,
                                                            get_settings().stacked_priors_max_labels),
                           progress=lambda message: progress(f"choosing the recipe: {message}"))
    args = choice.winner_args
    record = choice.to_dict()
    record["prior"] = final_prior_note(args)
    description = next(c["description"] for c in record["candidates"] if c["name"] == choice.winner)
    return Recipe(f"chosen: {choice.winner}", args, f"chosen on validation rows: {description}"), record


def candidate_runs(harness: Harness, choice: dict) -> list[Recipe]:
    """Every candidate the choice tried, as a recipe scored on test rows too (the report's "recipe chosen" table)."""
    tried = {c["name"]: c for c in choice["candidates"] if not c.get("skipped")}
    # Each with its prior trained as it would have been had it won (to its own priors' best epoch).
    return [Recipe(f"candidate: {c.name}",
                   dataclasses.replace(c.args, prior_last_epoch=tried[c.name].get("prior_last_epoch")), c.description)
            for c in candidate_recipes() if c.name in tried]
