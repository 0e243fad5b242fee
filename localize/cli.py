"""The admin CLI ``localize``: a thin door onto the same services the HTTP API uses."""
from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from localize.errors import LocalizeError, ValidationError

app = typer.Typer(help="localize: one frozen base model, a tiny adapter per user.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
tasks_app = typer.Typer(help="Tasks: a name and a label set.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their API keys.", no_args_is_help=True)
adapters_app = typer.Typer(help="Adapter versions per user and task.", no_args_is_help=True)
jobs_app = typer.Typer(help="Training jobs.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(users_app, name="users")
app.add_typer(adapters_app, name="adapters")
app.add_typer(jobs_app, name="jobs")
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)

TaskOpt = Annotated[str, typer.Option("--task", "-t", help="Task name.")]
UserOpt = Annotated[str, typer.Option("--user", "-u", help="User name.")]


@app.callback()
def main(
    home: Annotated[Optional[Path], typer.Option(help="Workspace folder (sets LOCALIZE_HOME).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    if home is not None:
        os.environ["LOCALIZE_HOME"] = str(home)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Domain errors and bad values (settings included) end the command with their message, not a traceback."""
    from sqlalchemy.exc import IntegrityError

    try:
        yield
    except LocalizeError as error:
        err_console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    except ValueError as error:  # pydantic's ValidationError (bad LOCALIZE_* settings) is one too
        err_console.print(f"[red]invalid value:[/red] {error}")
        raise typer.Exit(2) from None
    except IntegrityError as error:
        err_console.print(f"[red]conflict:[/red] another process changed the same record at once; retry ({error.orig})")
        raise typer.Exit(1) from None


def _runtime():  # noqa: ANN202
    from localize.runtime import Runtime
    from localize.settings import Settings

    runtime = Runtime(Settings())
    runtime.upgrade_database()
    return runtime


@contextmanager
def _services() -> Iterator[tuple]:
    """A runtime with its schema at head, and a session that commits at the end."""
    from localize.db.session import session_scope

    with _clean_errors():
        runtime = _runtime()
        with session_scope(runtime.database) as session:
            yield runtime, session


def _split_list(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


# -- db, tasks, users ---------------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision."""
    with _services():
        console.print("database is at head")


@tasks_app.command("create")
def tasks_create(
    name: str,
    labels: Annotated[str, typer.Option(help="Comma-separated label set, e.g. negative,neutral,positive.")],
    description: str = "",
) -> None:
    """Create a task with its label set."""
    from localize.services.tasks import create_task

    with _services() as (_, session):
        task = create_task(session=session, name=name, labels=_split_list(labels) or [], description=description)
        console.print(f"created task {task.name!r} with labels {task.labels}")


@tasks_app.command("list")
def tasks_list() -> None:
    """List tasks."""
    from localize.services.tasks import list_tasks
    from localize.services.users import label_counts

    with _services() as (_, session):
        table = Table("task", "labels", "users", "labels stored")
        for task in list_tasks(session=session):
            counts = label_counts(session=session, task_id=task.id)
            table.add_row(task.name, ", ".join(task.labels), str(len(counts)), str(sum(counts.values())))
        console.print(table)


@users_app.command("list")
def users_list(task: Annotated[Optional[str], typer.Option("--task", "-t")] = None) -> None:
    """List users, with their label counts and active adapter in a task."""
    from localize.services import adapters as adapter_service
    from localize.services.tasks import get_task
    from localize.services.users import label_counts, list_users

    with _services() as (_, session):
        task_row = get_task(session=session, name=task) if task else None
        users, count = list_users(session=session, task_id=task_row.id if task_row else None, limit=100_000)
        table = Table("user", *(["labels", "active adapter", "stale"] if task_row else []))
        counts = label_counts(session=session, task_id=task_row.id) if task_row else {}
        stale = {u.id for u in adapter_service.stale_users(session=session, task=task_row)} if task_row else set()
        for user in users:
            if task_row:
                active = adapter_service.active_version(session=session, task=task_row, user=user)
                table.add_row(user.name, str(counts.get(user.id, 0)),
                              f"v{active.version} {active.method}" if active else "-", "yes" if user.id in stale else "")
            else:
                table.add_row(user.name)
        console.print(table)
        console.print(f"{count} user(s)")


@users_app.command("create")
def users_create(name: str) -> None:
    """Create a user."""
    from localize.services.users import create_user

    with _services() as (_, session):
        console.print(f"created user {create_user(session=session, name=name).name!r}")


@users_app.command("key")
def users_key(name: str) -> None:
    """Issue a new API key for a user (the old one stops working). The key is printed once."""
    from localize.services.users import get_user, issue_api_key

    with _services() as (_, session):
        user = get_user(session=session, name=name)
        print(issue_api_key(session=session, user=user))


# -- labels -------------------------------------------------------------------------------------------------------
@app.command("import")
def import_labels(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL or CSV with user,text,label.")],
    task: TaskOpt,
    labels: Annotated[Optional[str], typer.Option(help="Label set for a new task; default: inferred from the file.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="jsonl or csv; default: from the extension.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Import only rows of this split (train or test).")] = None,
) -> None:
    """Import per-user labels. Bad rows are reported by line; good rows are kept. Re-importing updates."""
    from localize.labels_io import infer_label_set, read_label_file
    from localize.services.labels import upsert_labels
    from localize.services.tasks import ensure_task

    with _services() as (runtime, session):
        parsed = read_label_file(file, fmt=fmt, max_text_chars=runtime.settings.max_text_chars)
        rows = [row for row in parsed.rows if split is None or row.split == split]
        label_set = _split_list(labels) or infer_label_set(rows)
        task_row = ensure_task(session=session, name=task, labels=label_set)
        report = upsert_labels(session=session, task=task_row, rows=rows, errors=parsed.errors,
                               max_text_chars=runtime.settings.max_text_chars)
        console.print(f"task {task_row.name!r} labels {task_row.labels}: {report.created} created, "
                      f"{len(report.updated)} updated, {report.unchanged} unchanged, {len(report.errors)} rejected")
        for error in report.errors[:20]:
            err_console.print(f"  line {error.line}: {error.message}")
        if len(report.errors) > 20:
            err_console.print(f"  ... and {len(report.errors) - 20} more")
        if report.errors and not report.accepted:
            raise typer.Exit(1)


# -- training -----------------------------------------------------------------------------------------------------
def _training_args(runtime, method: str | None, args_file: Path | None, options: list[str] | None):  # noqa: ANN001, ANN202
    from localize.services.jobs import training_arguments

    try:
        values = json.loads(args_file.read_text()) if args_file else {}
    except json.JSONDecodeError as error:
        raise ValidationError(f"--args-file {str(args_file)!r} is not valid JSON: {error}") from None
    if method:
        values = {**values, "method": method} if isinstance(values, dict) else values
    try:
        return training_arguments(values, default_method=runtime.settings.default_method, overrides=options or [])
    except ValidationError as error:
        raise ValueError(str(error)) from None  # a bad option on the command line: a usage error, exit 2


@app.command()
def train(
    task: TaskOpt,
    user: Annotated[Optional[list[str]], typer.Option("--user", "-u", help="User to train (repeatable).")] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user with labels in the task.")] = False,
    stale: Annotated[bool, typer.Option("--stale", help="Only users whose labels changed since their adapter.")] = False,
    prior: Annotated[bool, typer.Option("--prior", help="Train the task prior on every user's labels first (done "
                                        "anyway when the recipe reads a prior and the task has none).")] = False,
    method: Annotated[Optional[str], typer.Option(help="Adapter method; default from settings.")] = None,
    args_file: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                      help="JSON file of training arguments.")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--set", help="key=value, e.g. max_epochs=10, method.r=4.")] = None,
    queue_only: Annotated[bool, typer.Option(help="Queue the jobs for a worker instead of running them here.")] = False,
) -> None:
    """Train adapters for one user, several, all users, or only stale ones."""
    from localize.jobrunner import run_jobs_locally
    from localize.services import adapters as adapter_service
    from localize.services import jobs as job_service
    from localize.services.tasks import get_task
    from localize.services.users import get_user, list_users

    with _services() as (runtime, session):
        args = _training_args(runtime, method, args_file, option)
        task_row = get_task(session=session, name=task)
        if sum([bool(user), all_users, stale]) > 1:
            raise ValueError("choose one of --user, --all and --stale")
        if user:
            targets = [get_user(session=session, name=name) for name in user]
        elif all_users:
            targets = list_users(session=session, task_id=task_row.id, limit=1_000_000)[0]
        elif stale:
            targets = adapter_service.stale_users(session=session, task=task_row)
        elif not prior:
            raise ValueError("name --user, --all, --stale or --prior")
        else:
            targets = []
        jobs = job_service.queue_many(session=session, task=task_row, users=targets, args=args,
                                      prior=True if prior else None, skip_pending=stale)
        if not jobs:
            console.print("nothing to train")
            return
        if queue_only:
            console.print(f"queued jobs {[job.id for job in jobs]}")
            return
        finished = run_jobs_locally(runtime=runtime, job_ids=[job.id for job in jobs], console=console)
        table = Table("job", "who", "state", "version", "val acc", "val macro-F1", "seconds")
        for job in finished:
            metrics = job.metrics or {}
            public = job_service.job_public(session=session, job=job, with_events=False)
            table.add_row(str(job.id), public.user or "task prior", job.state, str(public.adapter_version or "-"),
                          _fmt(metrics.get("val_accuracy")), _fmt(metrics.get("val_macro_f1")),
                          _fmt(metrics.get("train_seconds"), 1))
        console.print(table)
        if any(job.state != "succeeded" for job in finished):
            raise typer.Exit(1)


def _fmt(value, digits: int = 3) -> str:  # noqa: ANN001
    return "-" if value is None else f"{value:.{digits}f}"


# -- prediction ---------------------------------------------------------------------------------------------------
@app.command()
def predict(
    texts: Annotated[list[str], typer.Argument(help="Texts to classify.")],
    task: TaskOpt,
    user: Annotated[list[str], typer.Option("--user", "-u", help="User(s) whose adapter answers (repeatable).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify texts for one or more users (rows of all users share one batched pass)."""
    from localize.services.predictions import PredictionRequest, predict as predict_service

    with _services() as (runtime, session):
        requests = [PredictionRequest(user=u, task=task, text=t) for t in texts for u in user]
        results = predict_service(session=session, runtime=runtime, requests=requests)
        _print_predictions(results, as_json)


@app.command()
def fanout(
    text: str,
    task: TaskOpt,
    users: Annotated[Optional[str], typer.Option(help="Comma-separated users; default: all with an adapter.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify one text for every subscribed user of a task at once."""
    from localize.services.predictions import fanout as fanout_service
    from localize.services.tasks import get_task

    with _services() as (runtime, session):
        task_row = get_task(session=session, name=task)
        results = fanout_service(session=session, runtime=runtime, task=task_row, text=text,
                                 user_names=_split_list(users))
        _print_predictions(results, as_json)


def _print_predictions(results, as_json: bool) -> None:  # noqa: ANN001
    if as_json:
        print(json.dumps([vars(r) for r in results], indent=2))
        return
    table = Table("user", "text", "label", "p", "version")
    for r in results:
        table.add_row(r.user, r.text[:70], r.label, f"{r.probabilities[r.label]:.2f}", f"v{r.version} ({r.source})")
    console.print(table)


# -- adapters and jobs --------------------------------------------------------------------------------------------
def _owner(session, task: str, user: str | None):  # noqa: ANN001, ANN202
    from localize.services.tasks import get_task
    from localize.services.users import get_user

    return get_task(session=session, name=task), (get_user(session=session, name=user) if user else None)


PriorUserOpt = Annotated[Optional[str], typer.Option("--user", "-u", help="User name; omit for the task prior.")]


@adapters_app.command("list")
def adapters_list(task: TaskOpt, user: PriorUserOpt = None) -> None:
    """List a user's adapter versions with metrics, size, trainable parameters and the prior version a head reads."""
    from localize.services.adapters import list_versions, prior_versions

    with _services() as (_, session):
        task_row, user_row = _owner(session, task, user)
        table = Table("version", "method", "active", "labels", "val acc", "val macro-F1", "params", "bytes", "created",
                      "reads prior")
        unloadable = []
        rows = list_versions(session=session, task=task_row, user=user_row)
        priors = prior_versions(session=session, rows=rows)
        for row in rows:
            table.add_row(str(row.version), row.method, "*" if row.is_active else "", str(row.n_labels),
                          _fmt(row.metrics.get("val_accuracy")), _fmt(row.metrics.get("val_macro_f1")),
                          f"{row.trainable_params:,}", f"{row.nbytes:,}", str(row.created_at)[:19],
                          f"v{priors[row.id]}" if row.id in priors else "")
            if row.load_error:
                unloadable.append(f"version {row.version} is skipped while serving: {row.load_error}")
        console.print(table)
        for line in unloadable:
            console.print(f"[red]{line}[/red]")


@adapters_app.command("activate")
def adapters_activate(task: TaskOpt, version: Annotated[int, typer.Option()], user: PriorUserOpt = None) -> None:
    """Make a version the one that serves (activating an older one is a rollback)."""
    from localize.services.adapters import activate_version

    with _services() as (runtime, session):
        task_row, user_row = _owner(session, task, user)
        activate_version(session=session, store=runtime.store, task=task_row, user=user_row, version=version)
        console.print(f"version {version} is active")


@adapters_app.command("export")
def adapters_export(
    task: TaskOpt, out: Annotated[Path, typer.Option(help="Destination folder.")], user: PriorUserOpt = None,
    version: Annotated[Optional[int], typer.Option(help="Default: the active version.")] = None,
) -> None:
    """Copy an adapter version out of the store (PEFT layout plus the user's head; a head on the task prior brings
    the prior version it reads, in encoder/)."""
    from localize.errors import NoAdapterError
    from localize.services.adapters import active_version, export_version, get_version

    with _services() as (runtime, session):
        task_row, user_row = _owner(session, task, user)
        row = (get_version(session=session, task=task_row, user=user_row, version=version) if version is not None
               else active_version(session=session, task=task_row, user=user_row))
        if row is None:
            raise NoAdapterError(f"no active adapter for {user or 'the prior'} in task {task!r}")
        path = export_version(store=runtime.store, row=row, destination=out)
        console.print(f"exported version {row.version} to {path}")


@adapters_app.command("delete")
def adapters_delete(task: TaskOpt, version: Annotated[int, typer.Option()], user: PriorUserOpt = None) -> None:
    """Delete an inactive adapter version."""
    from localize.services.adapters import delete_version

    with _services() as (runtime, session):
        task_row, user_row = _owner(session, task, user)
        delete_version(session=session, store=runtime.store, task=task_row, user=user_row, version=version)
        console.print(f"deleted version {version}")


@jobs_app.command("list")
def jobs_list(state: Annotated[Optional[str], typer.Option()] = None, limit: int = 50) -> None:
    """List recent training jobs."""
    from localize.services.jobs import job_public, list_jobs

    with _services() as (_, session):
        jobs, count = list_jobs(session=session, state=state, limit=limit)
        table = Table("job", "task", "user", "state", "progress", "version", "error")
        for job in jobs:
            public = job_public(session=session, job=job, with_events=False)
            table.add_row(str(public.id), public.task, public.user or "(prior)", public.state,
                          f"{public.progress:.0%}", str(public.adapter_version or "-"), (public.error or "")[:60])
        console.print(table)
        console.print(f"{count} job(s)")


# -- processes ----------------------------------------------------------------------------------------------------
RayOpt = Annotated[Optional[str], typer.Option(
    "--ray", metavar="ADDRESS", help="Ray cluster: auto, local (start one here), host:6379 or ray://host:10001; "
    "default LOCALIZE_RAY_ADDRESS.")]


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run at most one job, then exit (with Ray: the jobs queued now, "
                                            "in parallel).")] = False,
    ray_address: RayOpt = None,
    max_concurrent: Annotated[Optional[int], typer.Option(
        min=1, help="With Ray: most jobs at once (default: as many as the cluster's CPUs/GPUs hold).")] = None,
) -> None:
    """Run training jobs from the queue until stopped: in this process, or as Ray tasks with --ray."""
    logging.getLogger("localize").setLevel(logging.INFO)
    with _clean_errors():
        runtime = _runtime()
        address = ray_address or runtime.settings.ray_address
        if address:
            from localize.distributed.training import RayWorker

            runner = RayWorker(runtime, address=address, max_concurrent=max_concurrent)
            console.print(f"Ray worker {runner.dispatcher_id}: each job asks for {runner.resources.num_cpus} CPU(s) "
                          f"and {runner.resources.num_gpus} GPU(s), up to {runner.resources.max_concurrent} at once")
        else:
            from localize.worker import Worker

            runner = Worker(runtime)
    if once:
        if address:
            for outcome in runner.run_until_idle():
                console.print(f"job {outcome['job_id']}: {outcome.get('state')}")
        else:
            runner.run_once()
        return
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        runner.stop()
        if address:
            runner.shutdown()


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    with_worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Also run one training worker.")] = True,
    ray_address: RayOpt = None,
    replicas: Annotated[Optional[int], typer.Option(
        min=1, help="With --ray: prediction replicas (default LOCALIZE_RAY_SERVE_REPLICAS).")] = None,
    attach: Annotated[bool, typer.Option(
        "--attach", help="With --ray: use the prediction replicas already deployed (another API replica "
                         "deployed them) instead of deploying.")] = False,
) -> None:
    """Run the HTTP API (and, by default, one training worker in its own process). With --ray, predictions run on
    Ray Serve replicas and the worker runs jobs as Ray tasks."""
    from localize.server import run_server

    with _clean_errors():
        if (replicas or attach) and not ray_address:
            raise ValueError("--replicas and --attach need --ray ADDRESS")
        run_server(host=host, port=port, with_worker=with_worker, ray_address=ray_address, replicas=replicas,
                   deploy=not attach)


@app.command()
def demo(
    labels_per_user: Annotated[int, typer.Option(help="Generated labels per user.")] = 500,
    method: Annotated[Optional[str], typer.Option(help="Adapter method; default from settings.")] = None,
    seed: int = 0,
) -> None:
    """Two traders, opposite positions: the same tweets get each one's own label."""
    from localize.demo import run_demo

    with _services() as (runtime, session):
        run_demo(runtime=runtime, session=session, labels_per_user=labels_per_user, method=method, seed=seed,
                 console=console)


@app.command("eval")
def evaluate(
    data: Annotated[list[Path], typer.Option(exists=True, file_okay=False,
                                             help="Folder with train.jsonl and test.jsonl (repeat with --report).")],
    method: Annotated[Optional[str], typer.Option(help="Adapter method; default: the default recipe.")] = None,
    users: Annotated[Optional[str], typer.Option(help="Comma-separated users; default: all that qualify.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write results JSON here.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write the full comparison (every recipe and baseline, "
                                                        "learning curves, calibration) as DIR/accuracy.md + PNGs.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="With --report: the default and the baselines only.")] = False,
    all_methods: Annotated[bool, typer.Option("--all-methods", help="With --report: also LoRA, IA3, prompt and prefix "
                                              "tuning (they run the encoder per user: minutes per user on a CPU).")] = False,
    save_encodings: Annotated[Optional[Path], typer.Option(help="With --report: keep the frozen embeddings in this "
                                                                 "folder between runs.")] = None,
    baselines: Annotated[bool, typer.Option(help="Also score the baselines.")] = True,
    through_services: Annotated[bool, typer.Option("--through-services", help="Import, queue, train and predict through "
                                                   "the production services in a scratch workspace (slow).")] = False,
    workspace: Annotated[Optional[Path], typer.Option(help="With --through-services: keep the workspace here.")] = None,
    min_train: int = 80,
    min_test: int = 15,
    option: Annotated[Optional[list[str]], typer.Option("--set", help="Training argument key=value.")] = None,
) -> None:
    """Train each qualifying user's adapter on their train rows and score it on their test rows."""
    from localize.evaluation import run_evaluation, run_report

    def progress(message: str) -> None:
        console.log(message)

    with _clean_errors():
        if report is not None:
            if method or option or users or through_services:
                raise ValidationError("--report runs every recipe on every qualifying user; it takes no --method, "
                                      "--set, --users or --through-services")
            command = "localize eval " + " ".join(f"--data {d}" for d in data) + f" --report {report}"
            command += " --quick" if quick else ""
            command += " --all-methods" if all_methods else ""
            if (min_train, min_test) != (80, 15):
                command += f" --min-train {min_train} --min-test {min_test}"
            path = run_report(data_dirs=list(data), out_dir=report, command=command, quick=quick,
                              all_methods=all_methods, save_encodings=save_encodings, min_train=min_train,
                              min_test=min_test, progress=progress)
            console.print(f"wrote {path}", soft_wrap=True)
            return
        if len(data) != 1:
            raise ValidationError(f"--data was given {len(data)} times; only --report takes several data sets")
        if through_services:
            from localize.evaluation.through_services import run_service_evaluation

            results = run_service_evaluation(data_dir=data[0], method=method, users=_split_list(users),
                                             workspace=workspace, min_train=min_train, min_test=min_test,
                                             options=option or [], console=console)
        else:
            results = run_evaluation(data_dir=data[0], method=method, options=option or [], users=_split_list(users),
                                     min_train=min_train, min_test=min_test, baselines=baselines, progress=progress)
    summary = results["summary"]
    console.print(f"{summary['users']} users, method {summary['method']}: mean accuracy {summary['mean_accuracy']:.3f}, "
                  f"mean macro-F1 {summary['mean_macro_f1']:.3f}")
    for baseline in results.get("baselines", []):
        console.print(f"  baseline {baseline['name']}: mean accuracy {baseline['mean_accuracy']:.3f}, "
                      f"mean macro-F1 {baseline['mean_macro_f1']:.3f}")
    if out:
        out.write_text(json.dumps(results, indent=2))
        console.print(f"wrote {out}", soft_wrap=True)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller sizes (fan-out of 1,000 users, one run each); "
                                                         "under a minute.")] = False,
    only: Annotated[Optional[str], typer.Option(help="Comma-separated benchmarks: mixed_batch, swap, peft, fanout, "
                                                      "train, adapter_load, cold_start, int8, serve; default: all.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the results JSON here.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write speed.md, bench.json and the throughput plot into "
                                                        "this folder (e.g. reports/).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch intra-op threads for the whole run (default: "
                                                         "torch's choice); 1 on a CPU shared with busy processes.")] = None,
) -> None:
    """Measure serving and training speed, each against a baseline from the same run; print a table and JSON."""
    from localize.bench import run_benchmarks

    with _clean_errors():
        if report is not None and out is None:
            out = Path(report) / "bench.json"
        run_benchmarks(quick=quick, only=_split_list(only), out=out, console=console, threads=threads, report=report)


@app.command()
def capacity(
    figures: Annotated[Optional[list[Path]], typer.Option(
        "--figures", help="JSON from `localize bench --out` or scripts/bench_ray.py (repeatable; later files "
                          "win); default: figures measured on the development machine.")] = None,
    users: Annotated[int, typer.Option(min=1, help="Users with an adapter.")] = 1_000_000,
    active: Annotated[float, typer.Option(help="Share of users who predict in a day.")] = 0.1,
    rate: Annotated[float, typer.Option(help="Peak prediction rows per second.")] = 1_000.0,
    retrains: Annotated[float, typer.Option(help="Retrains per user per day.")] = 0.1,
    resident_share: Annotated[float, typer.Option(help="Share of active users' adapters kept resident.")] = 1.0,
    replica_memory: Annotated[float, typer.Option(help="GiB of memory per prediction replica.")] = 8.0,
    utilization: Annotated[float, typer.Option(help="Planned busy share of replicas and workers.")] = 0.7,
    scenarios: Annotated[bool, typer.Option("--scenarios", help="Also plan the standard scenarios.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Prediction replicas and training workers for a user base, and where the first bottleneck appears."""
    from localize.capacity import SCENARIOS, Figures, Workload, describe, plan, render

    with _clean_errors():
        measured = Figures.from_files(figures) if figures else Figures()
        workload = Workload(users=users, active_fraction=active, requests_per_second=rate,
                            retrains_per_user_per_day=retrains, resident_share=resident_share,
                            replica_memory_gib=replica_memory, target_utilization=utilization)
        plans = {"this workload": plan(workload, measured)}
        if scenarios:
            plans.update({name: plan(scenario, measured) for name, scenario in SCENARIOS.items()})
    if as_json:
        console.print_json(json.dumps({name: p.as_dict() for name, p in plans.items()}))
        return
    typer.echo(describe(measured) + "\n\n" + render(plans))  # markdown tables, as docs/deploy.md shows them


if __name__ == "__main__":
    sys.exit(app())
