"""``localize train`` and ``localize jobs ...``: queue and run training jobs, list them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from localize.cli.common import (
    JsonOpt,
    TaskOpt,
    UsersOpt,
    err,
    find_task,
    find_user,
    fmt,
    names,
    out,
    print_json,
    print_table,
    services,
)
from localize.cli.root import app
from localize.errors import ValidationError
from localize.recipes import TaskRecipe

jobs_app = typer.Typer(help="Training jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


def _training_args(runtime, method: str | None, args_file: Path | None, options: list[str] | None):  # noqa: ANN001, ANN202
    from localize.services.jobs import arguments_or_task_recipe

    try:
        values = json.loads(args_file.read_text()) if args_file else {}
    except json.JSONDecodeError as error:
        raise ValidationError(f"--args-file {str(args_file)!r} is not valid JSON: {error}") from None
    if method:
        values = {**values, "method": method} if isinstance(values, dict) else values
    try:
        # Nothing named: the task's recipe (chosen by whole-task training, or pinned) when the job runs.
        return arguments_or_task_recipe(values, default_method=runtime.settings.default_method,
                                        overrides=options or [])
    except ValidationError as error:
        raise ValueError(str(error)) from None  # a bad option on the command line: a usage error, exit 2


@app.command()
def train(
    task: TaskOpt,
    user: UsersOpt = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user with labels in the task.")] = False,
    stale: Annotated[bool, typer.Option("--stale", help="Only users whose labels changed since their adapter, or "
                                        "whose adapter reads an older task prior.")] = False,
    prior: Annotated[bool, typer.Option("--prior", help="Train the task prior on every user's labels first (done "
                                        "anyway when the recipe reads a prior and the task has none).")] = False,
    method: Annotated[Optional[str], typer.Option(help="Recipe: prior-head (the default: MAP heads on the task "
                                                  "prior) or an adapter method trained per user; default from "
                                                  "settings.")] = None,
    args_file: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                      help="JSON file of training arguments.")] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        "--set", help="key=value, e.g. max_epochs=10, method.r=4.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Activate each new version even when it was scored on no "
                                        "validation rows or scores clearly below the active one.")] = False,
    queue_only: Annotated[bool, typer.Option(help="Queue the jobs for a worker instead of running them here.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the finished jobs as JSON.")] = False,
) -> None:
    """Train adapters for one user, several, all users, or only stale ones.

    With --all and no --method, --args-file or --set, the recipe is chosen on the task's own labels first: a few
    candidates are scored on held-out texts of every user, the winner is stored on the task (see `localize tasks
    show`) and every user trains with it. Without --method, users train with the task's recipe.

    A new version starts serving unless it was scored on no validation rows or scores clearly below the active
    version: then it is kept inactive with a warning (--force activates it anyway). Exit code 1 when a job
    failed."""
    from localize.jobrunner import run_jobs_locally
    from localize.services import adapters as adapter_service
    from localize.services import jobs as job_service
    from localize.services.users import list_users

    users = names(user)
    with services() as (runtime, session):
        args = _training_args(runtime, method, args_file, [*(option or []), *(["force_activation=true"] if force
                                                                              else [])])
        task_row = find_task(session, task)
        if sum([bool(users), all_users, stale]) > 1:
            raise ValueError("choose one of --user, --all and --stale")
        if users:
            targets = [find_user(session, name) for name in users]
        elif all_users:
            targets = list_users(session=session, task_id=task_row.id, limit=1_000_000)[0]
        elif stale:
            targets = adapter_service.stale_users(session=session, task=task_row)
        elif not prior:
            raise ValueError("name --user, --all, --stale or --prior")
        else:
            targets = []
        if all_users and isinstance(args, TaskRecipe) and not prior:  # whole-task training chooses the recipe
            jobs = job_service.queue_whole_task(session=session, task=task_row, users=targets,
                                                force_activation=args.force_activation,
                                                default_method=runtime.settings.default_method)
        else:
            jobs = job_service.queue_many(session=session, task=task_row, users=targets, args=args,
                                          prior=True if prior else None, skip_pending=stale)
        if not jobs:
            out().print("nothing to train")
            return
        if queue_only:
            out().print(f"queued jobs {[job.id for job in jobs]}")
            return
        finished = run_jobs_locally(runtime=runtime, job_ids=[job.id for job in jobs], console=err())
        public = [job_service.job_public(session=session, job=job, with_events=True) for job in finished]
    if as_json:
        print_json([p.model_dump(mode="json") for p in public])
    else:
        _print_training_summary(public, task)
    if any(p.state != "succeeded" for p in public):
        raise typer.Exit(1)


def _print_training_summary(public: list, task: str) -> None:  # noqa: ANN001
    rows = []
    for p in public:
        metrics = p.metrics or {}
        version = "-" if p.adapter_version is None else f"{p.adapter_version} {'active' if p.activated else 'inactive'}"
        validation = (f"{metrics['val_rows']}: {fmt(metrics.get('val_accuracy'))} / {fmt(metrics.get('val_macro_f1'))}"
                      if "val_rows" in metrics else "-")
        who = p.user or ("task prior, recipe " + metrics["recipe_chosen"] + " chosen" if "recipe_chosen" in metrics
                         else "task prior")
        rows.append([p.id, who, p.state, version, validation, fmt(metrics.get("train_seconds"), 1)])
    print_table(["job", "who", "state", "version", "val rows: acc / macro-F1", "seconds"], rows)
    unscored = []  # (user, labels) of new active versions scored on no validation rows
    for p in public:
        who = f"user {p.user!r}" if p.user else "the task prior"
        if p.state != "succeeded":
            err().print(f"[red]job {p.id} ({who}) {p.state}:[/red] {p.error or ''}", highlight=False)
        elif p.adapter_version is not None:
            outcome = next((e for e in reversed(p.events) if e.message.startswith("succeeded:")), None)
            if outcome is None or outcome.level != "warning":
                continue
            note = outcome.message.split(" (", 1)[-1].removesuffix(")")
            if p.activated and p.user and "scored on no validation rows" in note:
                unscored.append((p.user, (p.metrics or {}).get("train_rows", "?")))
                continue
            if p.activated:
                err().print(f"[yellow]warning:[/yellow] version {p.adapter_version} of {who} is {note}",
                            highlight=False)
                continue
            owner = f"--user {p.user}" if p.user else "--prior"
            err().print(f"[yellow]warning:[/yellow] version {p.adapter_version} of {who} is not serving: "
                        f"{note.removeprefix('kept inactive: ')}. Activate it anyway: `localize adapters activate "
                        f"--task {task} {owner} --version {p.adapter_version} --force`", highlight=False)
    _warn_unscored(unscored)


UNSCORED_LISTED = 10  # users named one by one; a whole task's many small users are summed up after them


def _warn_unscored(unscored: list[tuple[str, object]]) -> None:
    """One warning for every new active version that no validation row scored (its user had too few labels to
    hold some out): a task of hundreds of small users gets one line, not hundreds."""
    if not unscored:
        return
    named = ", ".join(f"{user} ({labels})" for user, labels in unscored[:UNSCORED_LISTED])
    more = f" and {len(unscored) - UNSCORED_LISTED} more" if len(unscored) > UNSCORED_LISTED else ""
    users = "1 user's new version is" if len(unscored) == 1 else f"{len(unscored)} users' new versions are"
    err().print(f"[yellow]warning:[/yellow] {users} active, though scored on no validation rows (their labels, in "
                f"brackets, were too few to hold some out), so their quality is unknown: {named}{more}",
                highlight=False)


def job_row(public) -> dict:  # noqa: ANN001
    """A job as listings show it: the recipe it ran and only the training arguments that apply to it."""
    from localize.recipes import applicable_arguments

    data = public.model_dump(mode="json")
    data["args"] = applicable_arguments(public.args, prior=public.user is None)
    return data


@jobs_app.command("list")
def jobs_list(
    state: Annotated[Optional[str], typer.Option(help="Only jobs in this state (queued, running, succeeded, "
                                                 "failed, cancelled).")] = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Only this task's jobs.")] = None,
    user: UsersOpt = None,
    limit: int = 50,
    as_json: JsonOpt = False,
) -> None:
    """List recent training jobs, newest first, with the recipe each ran; failures keep their whole reason."""
    from localize.services.jobs import job_public, list_jobs

    with services() as (_, session):
        task_row = find_task(session, task) if task else None
        users = [find_user(session, name) for name in names(user)] or [None]
        jobs, count = [], 0
        for user_row in users:
            found, found_count = list_jobs(session=session, state=state, task=task_row, user=user_row, limit=limit)
            jobs += found
            count += found_count
        rows = [job_row(job_public(session=session, job=job, with_events=False))
                for job in sorted(jobs, key=lambda j: -j.id)[:limit]]
    if as_json:
        print_json(rows)
        return
    print_table(["job", "task", "user", "recipe", "state", "progress", "version", "error"],
                [[r["id"], r["task"], r["user"] or "(prior)", r["recipe"], r["state"], f"{r['progress']:.0%}",
                  r["adapter_version"] or "-", r["error"] or ""] for r in rows])
    out().print(f"{count} job(s)")


@jobs_app.command("show")
def jobs_show(job_id: int, as_json: JsonOpt = False) -> None:
    """One job: its recipe, the arguments that apply to it, its metrics and its events."""
    from localize.errors import NotFoundError
    from localize.services.jobs import job_public

    with services() as (_, session):
        from localize.db.models import Job

        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} does not exist")
        public = job_public(session=session, job=job, with_events=True)
        row = job_row(public)
    if as_json:
        print_json(row)
        return
    out().print(f"job {row['id']}: {row['recipe']} for {row['user'] or 'the task prior'} in task {row['task']!r}, "
                f"{row['state']}" + (f", version {row['adapter_version']}" if row["adapter_version"] else ""),
                highlight=False)
    print_table(["argument", "value"], [[key, json.dumps(value)] for key, value in row["args"].items()])
    if row["metrics"]:
        print_table(["metric", "value"], [[key, value if not isinstance(value, float) else f"{value:.4g}"]
                                          for key, value in row["metrics"].items()])
    print_table(["time", "level", "event"], [[e["created_at"][:19], e["level"], e["message"]] for e in row["events"]])


@jobs_app.command("cancel")
def jobs_cancel(job_id: int, as_json: JsonOpt = False) -> None:
    """Cancel a job: a queued one at once, a running one at its next step (its worker stops it and says so)."""
    from localize.services.jobs import cancel_job, get_job, job_public

    with services() as (_, session):
        job = cancel_job(session=session, job=get_job(session=session, job_id=job_id))
        row = job_row(job_public(session=session, job=job, with_events=True))
    if as_json:
        print_json(row)
    elif row["state"] == "cancelled":
        out().print(f"job {job_id} cancelled", highlight=False)
    else:
        out().print(f"job {job_id} is {row['state']}: cancellation requested; its worker stops it at its next step "
                    f"(`localize jobs show {job_id}` follows it)", highlight=False)
