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
DEMO_CANDIDATE = "prior-lora"  # whole-task training's choice on the demo's own labels (reports/findings.md, round 25)


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
        # The demo's truths are interactions (gold *and* up): a task prior trained on both traders' labels, then a
        # LoRA per trader started from it (``prior-lora``), which whole-task training chooses on these labels. On
        # finance sentences nobody generated it is right .92 to .94 of the time, against .89 to .90 for MLP heads on
        # three priors (``prior3-mlp-averaged``, the report's choice on its smaller traders set; round 25).
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
    # New labels retrain the prior too (first), so that the traders' LoRAs start from one that has seen them.
    reads_prior = args.init_from_prior and (method is None or args.train_scope == "head")
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
