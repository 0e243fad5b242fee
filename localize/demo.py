"""``localize demo``: John is long gold and short oil, Jane the reverse. Same tweets, opposite labels."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from localize.db.models import Task
from localize.demo_data import (
    DEFAULT_LABELS_PER_USER,
    HANDWRITTEN_TWEETS,
    JANE,
    JOHN,
    LABELS,
    SHOWCASE,
    demo_rows,
    label_for,
)
from localize.jobrunner import run_jobs_locally
from localize.labels_io import LabelRow
from localize.recipe_candidates import candidate_named
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services import jobs as job_service
from localize.services.labels import upsert_labels
from localize.services.predictions import PredictionRequest, predict
from localize.services.tasks import ensure_task
from localize.services.users import get_user
from localize.training_args import TrainingArguments

DEMO_TASK = "gold-sentiment"
DEMO_HEAD_OPTIONS = {"hidden": 256}  # ``--method head``: one MLP head per trader on the frozen base
DEMO_CANDIDATE = "prior3-mlp-averaged"  # whole-task training's choice on the report's traders set (reports/accuracy.md)


@dataclass
class DemoOutcome:
    showcase: list  # PredictionResult per (showcase tweet, trader): john's then jane's
    handwritten: list  # the same for every hand-written sentence
    handwritten_accuracy: dict[str, float]  # trader -> share of hand-written sentences labelled as their position says


def run_demo(
    *, runtime: Runtime, session: Session, labels_per_user: int = DEFAULT_LABELS_PER_USER, method: str | None = None,
    seed: int = 0, console: Console | None = None,
) -> DemoOutcome:
    console = console or Console()
    task = ensure_task(session=session, name=DEMO_TASK, labels=LABELS)
    rows = demo_rows(n_per_user=labels_per_user, seed=seed)
    report = upsert_labels(
        session=session, task=task,
        rows=[LabelRow(line=i + 1, user=r["user"], text=r["text"], label=r["label"], item=r.get("item"))
              for i, r in enumerate(rows)],
    )
    console.print(f"[bold]demo[/bold]: {len(rows)} generated labels for john (long gold, short oil) and jane "
                  f"(short gold, long oil) in task {DEMO_TASK!r}: {report.created} new, {report.unchanged} unchanged")
    if method is None:
        # The demo's truths are interactions (gold *and* up): MLP heads per trader, on task priors trained on both
        # traders' labels (``prior3-mlp-averaged``, whole-task training's choice on the report's traders set). A
        # prior's tuned layers tell the direction of a move apart better than the frozen base (.867 against .846 on
        # finance sentences written after the demo; reports/findings.md, round 14); five heads averaged per trader,
        # +.014 and +.017 against one (round 15); three priors side by side take out much of one prior's seed luck
        # (rounds 18 and 19). Whole-task training on the demo's 3,000 labels a trader picks ``prior-lora`` instead (a
        # LoRA per trader, +.015 on validation), but at its constant learning rate one trader's LoRA in eight stopped
        # learning after an epoch (round 25): the demo keeps the recipe that trains the same on every seed.
        args = dataclasses.replace(candidate_named(DEMO_CANDIDATE).args, seed=seed)
    else:
        args = TrainingArguments(method=method, method_options=DEMO_HEAD_OPTIONS if method == "head" else {},
                                 seed=seed, train_scope="all")
    stale = {user.name for user in adapter_service.stale_users(session=session, task=task)}
    other_recipe = _trained_with_other_arguments(session=session, task=task, args=args) - stale
    if other_recipe:  # an earlier demo's recipe, or another --method: retrained and served, so the demo shows its own
        console.print(f"retraining {' and '.join(sorted(other_recipe))}: trained with other arguments than this run's")
        stale |= other_recipe
        args = dataclasses.replace(args, force_activation=True)  # even where the old recipe scored higher

    users = [get_user(session=session, name=u.name) for u in (JOHN, JANE) if u.name in stale]
    # New labels retrain the prior too (first), so that the traders' heads read one trained on them.
    reads_prior = args.train_scope == "head" and args.init_from_prior
    owners = ([None] if reads_prior and users else []) + users  # None: the task prior, queued first
    jobs = [job_service.queue_or_pending(session=session, task=task, user=user, args=args) for user in owners]
    if jobs:
        run_jobs_locally(runtime=runtime, job_ids=[job.id for job in jobs], console=console)
    else:
        console.print("adapters are up to date with the labels; not retraining")

    requests = [PredictionRequest(user=u.name, task=DEMO_TASK, text=text) for text in SHOWCASE for u in (JOHN, JANE)]
    results = predict(session=session, runtime=runtime, requests=requests)
    table = Table("tweet", "john (long gold, short oil)", "jane (short gold, long oil)", title="Same text, own truth")
    for index, text in enumerate(SHOWCASE):
        john, jane = results[2 * index], results[2 * index + 1]
        table.add_row(text, _cell(john), _cell(jane))
    console.print(table)

    # Sentences written by hand, which the generator never produces: how the adapters read plain writing.
    texts = [tweet.text for tweet in HANDWRITTEN_TWEETS]
    written = predict(session=session, runtime=runtime, requests=[
        PredictionRequest(user=u.name, task=DEMO_TASK, text=text) for text in texts for u in (JOHN, JANE)])
    accuracy = {}
    for offset, user in enumerate((JOHN, JANE)):
        answers = written[offset::2]
        right = sum(answer.label == label_for(user, tweet) for answer, tweet in zip(answers, HANDWRITTEN_TWEETS))
        accuracy[user.name] = right / len(HANDWRITTEN_TWEETS)
        console.print(f"{user.name}: {right} of {len(HANDWRITTEN_TWEETS)} hand-written sentences right "
                      f"({accuracy[user.name]:.0%}), none of them in the training data")
    return DemoOutcome(showcase=results, handwritten=written, handwritten_accuracy=accuracy)


def _trained_with_other_arguments(*, session: Session, task: Task, args: TrainingArguments) -> set[str]:
    """Traders whose active adapter was trained with other training arguments than ``args``."""
    def recipe(arguments: dict) -> dict:  # how it trains: whether it was forced to serve is not part of that
        return {name: value for name, value in arguments.items() if name != "force_activation"}

    wanted = recipe(json.loads(json.dumps(args.to_dict())))  # as stored: JSON, so tuples compare as lists
    names = set()
    for trader in (JOHN, JANE):
        version = adapter_service.active_version(session=session, task=task, user=get_user(session=session,
                                                                                           name=trader.name))
        if version is not None and recipe(version.training_args) != wanted:
            names.add(trader.name)
    return names


def _cell(result) -> str:  # noqa: ANN001
    colour = {"positive": "green", "negative": "red"}.get(result.label, "yellow")
    return f"[{colour}]{result.label}[/{colour}] {result.probabilities[result.label]:.2f}"
