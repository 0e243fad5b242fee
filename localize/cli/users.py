"""``localize users ...``: users, their label counts and API keys."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from localize.cli.common import JsonOpt, find_task, find_user, out, print_json, print_table, services
from localize.cli.root import app

users_app = typer.Typer(help="Users and their API keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("list")
def users_list(
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Only users with labels in this task, with "
                                                "their label count, active adapter and whether it is stale.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List users, with their label counts and active adapter in a task."""
    from localize.services import adapters as adapter_service
    from localize.services.users import label_counts, list_users

    with services() as (_, session):
        task_row = find_task(session, task) if task else None
        users, count = list_users(session=session, task_id=task_row.id if task_row else None, limit=100_000)
        rows = []
        counts = label_counts(session=session, task_id=task_row.id) if task_row else {}
        stale = {u.id for u in adapter_service.stale_users(session=session, task=task_row)} if task_row else set()
        for user in users:
            row = {"user": user.name}
            if task_row:
                active = adapter_service.active_version(session=session, task=task_row, user=user)
                row.update(labels=counts.get(user.id, 0), active_version=active.version if active else None,
                           method=active.method if active else None, stale=user.id in stale)
            rows.append(row)
    if as_json:
        print_json(rows)
        return
    if task_row:
        print_table(["user", "labels", "active adapter", "stale"],
                    [[r["user"], r["labels"], f"v{r['active_version']} {r['method']}" if r["active_version"] else "-",
                      "yes" if r["stale"] else ""] for r in rows])
    else:
        print_table(["user"], [[r["user"]] for r in rows])
    out().print(f"{count} user(s)")


@users_app.command("create")
def users_create(name: str) -> None:
    """Create a user."""
    from localize.services.users import create_user

    with services() as (_, session):
        out().print(f"created user {create_user(session=session, name=name).name!r}")


@users_app.command("key")
def users_key(name: str) -> None:
    """Issue a new API key for a user (the old one stops working). The key is printed once."""
    from localize.services.users import issue_api_key

    with services() as (_, session):
        user = find_user(session, name)
        print(issue_api_key(session=session, user=user))


@users_app.command("rename")
def users_rename(name: str, new_name: str) -> None:
    """Give a user a new name; their key, labels, adapters and jobs stay with them."""
    from localize.services.renames import rename_user

    with services() as (_, session):
        user = rename_user(session=session, user=find_user(session, name), name=new_name)
        out().print(f"renamed user {name!r} to {user.name!r}")


@users_app.command("delete")
def users_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a user with their key, labels, adapter versions (files included) and jobs, in every task."""
    from localize.services.renames import delete_user

    with services() as (runtime, session):
        user = find_user(session, name)
        if not yes:
            typer.confirm(f"delete user {name!r} with all their labels, adapters and jobs?", abort=True)
        report = delete_user(session=session, runtime=runtime, user=user)
    if as_json:
        print_json(report.to_dict())
        return
    out().print(f"deleted user {report.user!r}: {report.labels} label(s), {report.adapter_versions} adapter "
                f"version(s), {report.jobs} job(s), {report.texts} text(s) no one else labelled")
    for location in report.files_not_removed:
        out().print(f"[yellow]warning:[/yellow] could not remove {location}")
