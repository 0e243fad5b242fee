"""``localize import`` and ``localize labels ...``: per-user labels from a file; a task's label set."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from localize.cli.common import (
    JsonOpt,
    TaskOpt,
    err,
    find_task,
    out,
    print_json,
    print_table,
    services,
    split_list,
)
from localize.cli.root import app
from localize.errors import NotFoundError

labels_app = typer.Typer(help="A task's label set: counts, renames and deletions.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")


def warn_lookalike_labels(labels: list[str], task: str | None = None) -> None:
    """Warns about labels so alike that one is probably a typo of the other (``postive`` beside ``positive``)."""
    from localize.suggest import lookalike_pairs

    for first, second in lookalike_pairs(labels):
        fix = f"`localize labels rename --task {task} {first} {second}`" if task else "a rename"
        err().print(f"[yellow]warning:[/yellow] labels {first!r} and {second!r} look alike; if one is a typo, "
                    f"merge it into the other with {fix}", highlight=False)


@app.command("import")
def import_labels(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL or CSV with user,text,label.")],
    task: TaskOpt,
    create: Annotated[bool, typer.Option("--create", help="Create the task if it does not exist (its label set: "
                                         "--labels, else the labels the file uses).")] = False,
    labels: Annotated[Optional[str], typer.Option(help="With --create: the new task's label set, comma-separated; "
                                                  "default: the labels the file uses.")] = None,
    allow_rejected: Annotated[bool, typer.Option("--allow-rejected", help="Exit 0 when some rows were rejected "
                                                 "(the good rows are kept either way).")] = False,
    fmt: Annotated[Optional[str], typer.Option("--format", help="jsonl or csv; default: from the extension.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Import only rows of this split (train or test).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the import report as JSON.")] = False,
) -> None:
    """Import per-user labels. Bad rows are reported by line and good rows are kept; re-importing updates.

    Exit code: 0 when every row went in; 1 when any row was rejected (0 with --allow-rejected, unless no row at
    all went in), or the task does not exist and --create was not given."""
    from localize.labels_io import infer_label_set, read_label_file
    from localize.services.labels import upsert_labels
    from localize.services.tasks import create_task, find_task as find_existing
    from localize.suggest import did_you_mean

    created_task = False
    with services() as (runtime, session):
        parsed = read_label_file(file, fmt=fmt, max_text_chars=runtime.settings.max_text_chars)
        rows = [row for row in parsed.rows if split is None or row.split == split]
        task_row = find_existing(session=session, name=task)
        if task_row is None:
            label_set = split_list(labels) or infer_label_set(rows)
            if not create:
                from localize.services.tasks import list_tasks

                hint = did_you_mean(task, [t.name for t in list_tasks(session=session)])
                raise NotFoundError(f"task {task!r} does not exist{hint}; to create it with labels {label_set}, "
                                    "add --create")
            task_row = create_task(session=session, name=task, labels=label_set)
            created_task = True
        elif labels and set(split_list(labels) or []) != set(task_row.labels):
            err().print(f"[yellow]warning:[/yellow] task {task!r} exists with labels {task_row.labels}; --labels "
                        "is ignored", highlight=False)
        report = upsert_labels(session=session, task=task_row, rows=rows, errors=parsed.errors,
                               max_text_chars=runtime.settings.max_text_chars)
        task_name, task_labels = task_row.name, list(task_row.labels)
    if as_json:
        print_json({"task": task_name, "labels": task_labels, "task_created": created_task, **report.to_dict()})
    else:
        verb = "created task" if created_task else "task"
        out().print(f"{verb} {task_name!r} labels {task_labels}: {report.created} created, "
                    f"{len(report.updated)} updated, {report.unchanged} unchanged, {len(report.errors)} rejected",
                    highlight=False)
        for error in report.errors[:20]:
            err().print(f"  line {error.line}: {error.message}", highlight=False, markup=False)
        if len(report.errors) > 20:
            err().print(f"  ... and {len(report.errors) - 20} more (--json lists them all)")
    if created_task:
        warn_lookalike_labels(task_labels, task_name)
    if report.errors and (not allow_rejected or not report.accepted):
        if not as_json:
            stored = (f"the other {report.accepted} are stored; --allow-rejected accepts a partial import"
                      if report.accepted else "nothing was stored")
            err().print(f"{len(report.errors)} row(s) rejected; {stored}", highlight=False)
        raise typer.Exit(1)


@labels_app.command("list")
def labels_list(task: TaskOpt, as_json: JsonOpt = False) -> None:
    """A task's labels with how many stored labels and users use each."""
    from sqlalchemy import func
    from sqlmodel import select

    from localize.db.models import Label

    with services() as (_, session):
        task_row = find_task(session, task)
        counts = {label: (rows, users) for label, rows, users in session.exec(
            select(Label.label, func.count(), func.count(func.distinct(Label.user_id)))
            .where(Label.task_id == task_row.id).group_by(Label.label))}
        rows = [{"label": label, "labels_stored": counts.get(label, (0, 0))[0], "users": counts.get(label, (0, 0))[1]}
                for label in task_row.labels]
    if as_json:
        print_json(rows)
        return
    print_table(["label", "labels stored", "users"], [[r["label"], r["labels_stored"], r["users"]] for r in rows])


def _print_edit(edit, as_json: bool) -> None:  # noqa: ANN001
    if as_json:
        print_json(edit.to_dict())
        return
    what = f"renamed label {edit.label!r} to {edit.new_label!r}" if edit.new_label else f"deleted label {edit.label!r}"
    out().print(f"{what} in task {edit.task!r} ({edit.rows} stored label(s)); labels now {edit.labels}",
                highlight=False)
    if edit.users:
        out().print(f"{len(edit.users)} user(s) now stale until retrained ({', '.join(edit.users)}): "
                    f"`localize train --task {edit.task} --stale`", highlight=False)


@labels_app.command("rename")
def labels_rename(
    label: str, new_label: str, task: TaskOpt, as_json: JsonOpt = False,
) -> None:
    """Rename a label in the task's set and in every stored label; renaming onto an existing label merges the two
    (the fix for a typo such as `postive`). Users who had it become stale."""
    from localize.services.renames import rename_label

    with services() as (_, session):
        edit = rename_label(session=session, task=find_task(session, task), label=label, new_label=new_label)
    _print_edit(edit, as_json)


@labels_app.command("delete")
def labels_delete(
    label: str, task: TaskOpt,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove a label from the task's set with every stored label that has it (the set keeps at least two)."""
    from localize.services.renames import delete_label

    with services() as (_, session):
        task_row = find_task(session, task)
        if not yes:
            typer.confirm(f"delete label {label!r} and every stored label that has it from task {task!r}?",
                          abort=True)
        edit = delete_label(session=session, task=task_row, label=label)
    _print_edit(edit, as_json)
