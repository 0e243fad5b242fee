"""``localize adapters ...``: a user's (or the task prior's) adapter versions."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from localize.cli.common import JsonOpt, TaskOpt, fmt, out, owner, print_json, print_table, services
from localize.cli.root import app

adapters_app = typer.Typer(help="Adapter versions per user and task.", no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")

OwnerUserOpt = Annotated[Optional[str], typer.Option("--user", "-u", help="User whose versions to act on.")]
PriorOpt = Annotated[bool, typer.Option("--prior", help="Act on the task prior's versions instead of a user's.")]
VersionOpt = Annotated[int, typer.Option(help="Version number (see `localize adapters list`).")]


def _owner(session, task: str, user: str | None, prior: bool, *, listing: bool = False):  # noqa: ANN001, ANN202
    """The task and the user (None: the task prior). Acting on the prior takes --prior, so a forgotten --user
    never rolls back or deletes the prior every user's head reads."""
    if user and prior:
        raise ValueError("name either --user or --prior, not both")
    if not user and not prior and not listing:
        raise ValueError("name --user USER, or --prior to act on the task prior")
    return owner(session, task, user)


@adapters_app.command("list")
def adapters_list(task: TaskOpt, user: OwnerUserOpt = None, prior: PriorOpt = False, as_json: JsonOpt = False) -> None:
    """List a user's (without --user: the task prior's) adapter versions: recipe, validation rows and scores,
    trainable parameters and bytes, and the prior version a head reads (--json adds when each was created)."""
    from localize.recipes import recipe_name
    from localize.services.adapters import list_versions, prior_versions

    with services() as (_, session):
        task_row, user_row = _owner(session, task, user, prior, listing=True)
        versions = list_versions(session=session, task=task_row, user=user_row)
        priors = prior_versions(session=session, rows=versions)
        rows = [{"version": row.version, "method": row.method,
                 "recipe": recipe_name(row.training_args or {}, prior=user_row is None) if row.training_args
                 else row.method,
                 "active": row.is_active, "labels": row.n_labels, "val_rows": row.metrics.get("val_rows"),
                 "val_accuracy": row.metrics.get("val_accuracy"), "val_macro_f1": row.metrics.get("val_macro_f1"),
                 "trainable_params": row.trainable_params, "bytes": row.nbytes,
                 "created_at": str(row.created_at)[:19], "reads_prior": priors.get(row.id),
                 "load_error": row.load_error} for row in versions]
    if as_json:
        print_json(rows)
        return
    print_table(["version", "recipe", "labels", "val rows: acc / macro-F1", "params / bytes", "reads prior"],
                [[f"{r['version']} active" if r["active"] else r["version"], r["recipe"], r["labels"],
                  "-" if r["val_rows"] is None else f"{r['val_rows']}: {fmt(r['val_accuracy'])} / "
                                                    f"{fmt(r['val_macro_f1'])}",
                  f"{r['trainable_params']:,} / {r['bytes']:,}", f"v{r['reads_prior']}" if r["reads_prior"] else ""]
                 for r in rows])
    for r in rows:
        if r["load_error"]:
            out().print(f"[red]version {r['version']} is skipped while serving:[/red] {r['load_error']}",
                        highlight=False)


@adapters_app.command("activate")
def adapters_activate(
    task: TaskOpt, version: VersionOpt, user: OwnerUserOpt = None, prior: PriorOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Activate even a version scored on no validation rows or "
                                        "clearly below the active one.")] = False,
) -> None:
    """Make a version the one that serves (activating an older one is a rollback). A version scored on no
    validation rows, or clearly below the active one, is refused without --force."""
    from localize.services.adapters import activate_version

    with services() as (runtime, session):
        task_row, user_row = _owner(session, task, user, prior)
        activate_version(session=session, store=runtime.store, task=task_row, user=user_row, version=version,
                         check_quality=not force)
        out().print(f"version {version} of {'user ' + repr(user) if user else 'the task prior'} is active")
        if prior:
            out().print(f"users' heads fitted on another prior version are now stale: "
                        f"`localize train --task {task} --stale`")


@adapters_app.command("export")
def adapters_export(
    task: TaskOpt, out_dir: Annotated[Path, typer.Option("--out", help="Destination folder.")],
    user: OwnerUserOpt = None, prior: PriorOpt = False,
    version: Annotated[Optional[int], typer.Option(help="Default: the active version.")] = None,
) -> None:
    """Copy an adapter version out of the store (PEFT layout plus the user's head; a head on the task prior brings
    the prior version it reads, in encoder/)."""
    from localize.errors import NoAdapterError
    from localize.services.adapters import active_version, export_version, get_version

    with services() as (runtime, session):
        task_row, user_row = _owner(session, task, user, prior)
        row = (get_version(session=session, task=task_row, user=user_row, version=version) if version is not None
               else active_version(session=session, task=task_row, user=user_row))
        if row is None:
            raise NoAdapterError(f"no active adapter for {user or 'the prior'} in task {task!r}")
        path = export_version(store=runtime.store, row=row, destination=out_dir)
        out().print(f"exported version {row.version} to {path}", soft_wrap=True)


@adapters_app.command("delete")
def adapters_delete(task: TaskOpt, version: VersionOpt, user: OwnerUserOpt = None, prior: PriorOpt = False) -> None:
    """Delete an inactive adapter version."""
    from localize.services.adapters import delete_version

    with services() as (runtime, session):
        task_row, user_row = _owner(session, task, user, prior)
        delete_version(session=session, store=runtime.store, task=task_row, user=user_row, version=version)
        out().print(f"deleted version {version}")
