"""``localize tasks show`` and ``localize tasks recipe``: a task's settings and the recipe its users train with."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from localize.cli.common import JsonOpt, find_task, fmt, out, print_json, print_table, services
from localize.cli.tasks import tasks_app
from localize.recipes import describe_decision_rule


@tasks_app.command("show")
def tasks_show(name: str, as_json: JsonOpt = False) -> None:
    """A task's labels, settings and recipe: the one whole-task training chose, with every candidate's
    validation figures and seconds, or the one an admin pinned."""
    from localize.services.users import label_counts

    with services() as (_, session):
        task = find_task(session, name)
        counts = label_counts(session=session, task_id=task.id)
        shown = {"task": task.name, "labels": list(task.labels), "description": task.description,
                 "target_accuracy": task.target_accuracy, "users": len(counts),
                 "labels_stored": sum(counts.values()), "recipe": task.recipe}
    if as_json:
        print_json(shown)
        return
    recipe = shown["recipe"] or {}
    out().print(f"task {shown['task']!r}: labels {', '.join(shown['labels'])}; {shown['users']} user(s), "
                f"{shown['labels_stored']} label(s); predictions abstain below {shown['target_accuracy']:.2f} "
                "validation accuracy", highlight=False)
    if not recipe:
        out().print("recipe: prior-head (the default; `localize train --task T --all` chooses one on the task's "
                    "labels)", highlight=False)
        return
    how = "pinned by an admin" if recipe.get("pinned") else "chosen on the task's labels"
    out().print(f"recipe: {recipe['recipe']} ({how})", highlight=False)
    _print_choice(recipe.get("choice"))


def _print_choice(choice: dict | None) -> None:
    if not choice:
        return
    where = (f"{choice['folds']} folds by text" if choice["folds"] > 1 else "one held-out share of the texts")
    out().print(f"last choice ({choice.get('chosen_at', '?')}): winner {choice['recipe']}, scored on "
                f"{choice['validation_rows']:,} rows of {choice['validation_texts']:,} texts ({where}) of "
                f"{choice.get('users_scored', '?')} of {choice.get('users', '?')} users, {choice['seconds']:.0f} s", highlight=False)
    wins = choice.get("bootstrap_wins", {})
    rows = []
    for c in choice["candidates"]:
        if c.get("skipped"):
            rows.append([c["name"], "-", "-", "-", "-", "skipped: " + c["skipped"]])
            continue
        rows.append([c["name"], fmt(c["accuracy"]), fmt(c["macro_f1"]), fmt(c["score"]),
                     f"{100 * wins.get(c['name'], 0):.0f}%", _seconds(c)])
    print_table(["candidate", "val accuracy", "val macro-F1", "score", "wins (user resamples)", "seconds"], rows)
    if choice.get("fold_winners") and choice["folds"] > 1:
        out().print("winner per fold: " + ", ".join(choice["fold_winners"]), highlight=False)
    winner = next((c for c in choice["candidates"] if c["name"] == choice["recipe"]), {})
    if winner.get("held_out_ece") is not None:
        out().print(f"calibration, corrected on the held-out rows: temperatures x {winner['temperature_scale']:.2f}, "
                    f"uniform share + {winner['added_uniform_share']:.2f} (ECE there {winner['held_out_ece']:.3f} -> "
                    f"{winner['held_out_ece_corrected']:.3f})", highlight=False)
    if describe_decision_rule(winner):
        out().print(describe_decision_rule(winner), highlight=False)
    if choice.get("prior"):
        out().print(f"task prior: {choice['prior']}", highlight=False)


def _seconds(candidate: dict) -> str:
    """A candidate's seconds; one scored from another's fits (a lone head of averaged heads) cost nothing more."""
    return f"in {candidate['scored_from']}'s" if candidate.get("scored_from") else fmt(candidate["seconds"], 0)


@tasks_app.command("recipe")
def tasks_recipe(
    name: str,
    pin: Annotated[Optional[str], typer.Option(help="Pin this recipe: prior-head, pooled-head, prior-mlp, "
                                               "prior-mlp-averaged, prior3-head, prior3-mlp-averaged or "
                                               "prior-lora.")] = None,
    unpin: Annotated[bool, typer.Option("--unpin", help="Let the next whole-task training choose again.")] = False,
) -> None:
    """Pin the recipe a task's users train with, or unpin it. Users' next jobs use it; `localize train --task T
    --all` retrains them all."""
    from localize.services.task_recipes import pin_recipe

    with services() as (_, session):
        if (pin is None) == (not unpin):
            raise ValueError("name --pin RECIPE or --unpin")  # a usage error: exit 2
        task = pin_recipe(session=session, task=find_task(session, name), name=pin)
        if pin:
            out().print(f"task {name!r} now trains with {task.recipe['recipe']} (pinned)", highlight=False)
        else:
            out().print(f"task {name!r} is unpinned: the next whole-task training chooses its recipe again "
                        f"(until then: {task.recipe.get('recipe', 'prior-head')})", highlight=False)
