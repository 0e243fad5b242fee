"""``localize tasks ...`` and ``localize db ...``: task rows and the schema."""
from __future__ import annotations

from typing import Annotated

import typer

from localize.cli.common import JsonOpt, err, find_task, out, print_json, print_table, services, split_list
from localize.cli.root import app

tasks_app = typer.Typer(help="Tasks: a name and a label set.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision."""
    with services():
        out().print("database is at head")


@tasks_app.command("create")
def tasks_create(
    name: str,
    labels: Annotated[str, typer.Option(help="Comma-separated label set, e.g. negative,neutral,positive.")],
    description: str = "",
) -> None:
    """Create a task with its label set."""
    from localize.cli.labels import warn_lookalike_labels
    from localize.services.tasks import create_task

    with services() as (_, session):
        task = create_task(session=session, name=name, labels=split_list(labels) or [], description=description)
        out().print(f"created task {task.name!r} with labels {task.labels}")
        warn_lookalike_labels(task.labels)


@tasks_app.command("list")
def tasks_list(as_json: JsonOpt = False) -> None:
    """List tasks with their label sets, how many users labelled in each and how many labels they stored."""
    from localize.services.tasks import list_tasks
    from localize.services.users import label_counts

    with services() as (_, session):
        rows = []
        for task in list_tasks(session=session):
            counts = label_counts(session=session, task_id=task.id)
            rows.append({"task": task.name, "labels": list(task.labels), "users": len(counts),
                         "labels_stored": sum(counts.values())})
    if as_json:
        print_json(rows)
        return
    print_table(["task", "labels", "users", "labels stored"],
                [[r["task"], ", ".join(r["labels"]), r["users"], r["labels_stored"]] for r in rows])


@tasks_app.command("rename")
def tasks_rename(name: str, new_name: str) -> None:
    """Give a task a new name; its labels, adapters and jobs stay with it."""
    from localize.services.renames import rename_task

    with services() as (_, session):
        task = rename_task(session=session, task=find_task(session, name), name=new_name)
        out().print(f"renamed task {name!r} to {task.name!r}")


@tasks_app.command("delete")
def tasks_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking for confirmation.")] = False,
) -> None:
    """Delete a task with every user's labels in it, its text pool, its adapter versions and their stored files,
    its jobs, and the texts no other task uses. Users, their keys and other tasks stay. Asks first unless --yes."""
    from localize.services.tasks import delete_task, deletion_plan

    with services() as (runtime, session):
        task = find_task(session, name)
        plan = deletion_plan(session=session, store=runtime.store, task=task)
        out().print(f"task {name!r} holds {plan.labels} label(s) of {plan.users} user(s), {plan.adapter_versions} "
                    f"adapter version(s) with their stored files and {plan.jobs} job(s); users and their keys stay",
                    highlight=False)
        for location in plan.files:
            out().print(f"  adapter files: {location}", highlight=False)
        if not yes:
            typer.confirm(f"delete task {name!r} and all of the above?", abort=True)
        deleted = delete_task(session=session, runtime=runtime, task=task)
        out().print(f"deleted task {name!r}: {deleted.labels} label(s), {deleted.adapter_versions} adapter "
                    f"version(s), {deleted.jobs} job(s), {deleted.texts} text(s) no other task uses",
                    highlight=False)
        for location in deleted.files_not_removed:
            err().print(f"[yellow]warning:[/yellow] could not remove {location}; it is unused and can be removed "
                        "by hand")
