"""The recipe ``localize eval`` scores by default: the one whole-task training would choose on the data set's train
rows (``localize.recipe_choice``, the code the training job runs), trained on them as production trains it."""
from __future__ import annotations

import time
from collections.abc import Callable

from localize.evaluation.harness import Harness, Recipe
from localize.recipe_choice import Row, candidate_recipes, choose_recipe, configured_candidates
from localize.settings import get_settings


def choose_for(harness: Harness, *, progress: Callable[[str], None] = lambda message: None) -> tuple[Recipe, dict]:
    """The chosen recipe (its prior, when the choice trained one production would reuse, placed in the harness's
    prior cache) and the choice's record. Test rows play no part: the choice sees every user's train rows only."""
    started = time.perf_counter()
    rows = [Row(r.user, r.text, r.label) for r in harness.data.train]
    choice = choose_recipe(harness.base, rows, harness.data.labels, cache=harness.cache,
                           candidates=configured_candidates(get_settings().recipe_candidates),
                           progress=lambda message: progress(f"choosing the recipe: {message}"))
    args = choice.winner_args
    record = choice.to_dict()
    if choice.reusable_prior is not None:
        harness.use_prior(args, choice.reusable_prior, time.perf_counter() - started)
        record["prior"] = "the one the choice trained (every text but the held-out share)"
    else:
        record["prior"] = "trained again on every text" if args.init_from_prior else None
    description = next(c["description"] for c in record["candidates"] if c["name"] == choice.winner)
    return Recipe(f"chosen: {choice.winner}", args, f"chosen on validation rows: {description}"), record


def candidate_runs(harness: Harness, choice: dict) -> list[Recipe]:
    """Every candidate the choice tried, as a recipe scored on test rows too (the report's "recipe chosen" table)."""
    tried = {c["name"] for c in choice["candidates"] if not c.get("skipped")}
    return [Recipe(f"candidate: {c.name}", c.args, c.description) for c in candidate_recipes() if c.name in tried]
