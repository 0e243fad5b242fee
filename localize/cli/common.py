"""What every command module shares: the consoles, common options, clean error exits and a service session.

Nothing heavy (torch, transformers, the engine) is imported here or at the top of a command module: commands that
only touch the database must start fast."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from localize.cli.start_up import close_at_exit, start_up_done
from localize.errors import LocalizeError, NotFoundError

if TYPE_CHECKING:
    from localize.runtime import Runtime

TaskOpt = Annotated[str, typer.Option("--task", "-t", help="Task name.")]
UserOpt = Annotated[str, typer.Option("--user", "-u", help="User name.")]
PriorUserOpt = Annotated[Optional[str], typer.Option("--user", "-u", help="User name; omit for the task prior.")]


def out() -> Console:
    """The console commands print to; looked up on the package at call time so tests can swap it."""
    return sys.modules["localize.cli"].console


def err() -> Console:
    return sys.modules["localize.cli"].err_console


@contextmanager
def clean_errors() -> Iterator[None]:
    """Domain errors and bad values (settings included) end the command with their message, not a traceback.

    Every command enters this (or :func:`services`) when its imports are done and its work begins."""
    from sqlalchemy.exc import IntegrityError

    start_up_done()
    try:
        yield
    except NotFoundError as error:  # most often the wrong workspace: say which one was read
        err().print(f"[red]error:[/red] {escape(str(error))} (workspace {escape(workspace_label())}; "
                    "`localize info` describes it)", highlight=False)
        raise typer.Exit(1) from None
    except LocalizeError as error:
        err().print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from None
    except ValueError as error:  # pydantic's ValidationError (bad LOCALIZE_* settings) is one too
        err().print(f"[red]invalid value:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(2) from None
    except IntegrityError as error:
        err().print(f"[red]conflict:[/red] another process changed the same record at once; retry ({error.orig})")
        raise typer.Exit(1) from None


def make_runtime() -> Runtime:
    from localize.runtime import Runtime
    from localize.settings import Settings

    from localize.db.session import schema_is_current

    runtime = Runtime(Settings())
    close_at_exit(runtime.database.dispose)  # SQLite removes its -wal and -shm files when the last connection closes
    if not schema_is_current(runtime.database):  # Alembic is slow to import: only when there is work for it
        runtime.upgrade_database()
    return runtime


@contextmanager
def services() -> Iterator[tuple]:
    """A runtime with its schema at head, and a session that commits at the end."""
    from localize.db.session import session_scope

    with clean_errors():
        runtime = make_runtime()
        with session_scope(runtime.database) as session:
            yield runtime, session


def split_list(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def fmt(value, digits: int = 3) -> str:  # noqa: ANN001
    return "-" if value is None else f"{value:.{digits}f}"


def workspace_label() -> str:
    """The workspace this command reads: LOCALIZE_HOME (or --home), else the per-user default; plus the database
    when LOCALIZE_DATABASE_URL points elsewhere."""
    from localize.settings import default_home

    home = os.environ.get("LOCALIZE_HOME") or str(default_home())
    try:
        from localize.settings import Settings

        settings = Settings()
    except ValueError:
        return home
    if settings.database_url:
        from sqlalchemy.engine import make_url

        return f"{home}, database {make_url(settings.database_url).render_as_string(hide_password=True)}"
    return home


def find_task(session, name: str):  # noqa: ANN001, ANN201
    """The task ``name``, or a NotFoundError that suggests the closest existing names."""
    from localize.services.tasks import find_task as find, list_tasks
    from localize.suggest import did_you_mean

    task = find(session=session, name=name)
    if task is None:
        names = [row.name for row in list_tasks(session=session)]
        raise NotFoundError(f"task {name!r} does not exist{did_you_mean(name, names)}")
    return task


def find_user(session, name: str):  # noqa: ANN001, ANN201
    """The user ``name``, or a NotFoundError that suggests the closest existing names."""
    from sqlmodel import select

    from localize.db.models import User
    from localize.services.users import find_user as find
    from localize.suggest import did_you_mean

    user = find(session=session, name=name)
    if user is None:
        raise NotFoundError(f"user {name!r} does not exist{did_you_mean(name, session.exec(select(User.name)))}")
    return user


def owner(session, task: str, user: str | None):  # noqa: ANN001, ANN201
    return find_task(session, task), (find_user(session, user) if user else None)


# -- options and output shared by the command modules --------------------------------------------------------------
UsersOpt = Annotated[Optional[list[str]], typer.Option(
    "--user", "-u", help="User name; repeat the option or separate names with commas.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of the table.")]


def names(values: list[str] | None) -> list[str]:
    """The names of a repeatable option whose values may also hold comma-separated names, in order, once each."""
    return list(dict.fromkeys(part.strip() for value in values or [] for part in value.split(",") if part.strip()))


def print_json(value) -> None:  # noqa: ANN001
    """JSON on stdout, nothing else: for scripts and ``jq``."""
    import json

    print(json.dumps(value, indent=2, default=str))


def print_table(
    headers: list[str], rows: list[list[str]], *, title: str | None = None, show_header: bool = True,
) -> None:
    """A table that never cuts a cell, at 80 columns or piped: cells wrap where rich would otherwise shorten them
    with an ellipsis."""
    from rich.table import Table

    table = Table(title=title, show_header=show_header)
    for header in headers:
        # rich shrinks the widest columns first; "fold" wraps a cell (between words where it can) instead of cutting
        # it with an ellipsis, so ids, numbers and reasons always show whole.
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    out().print(table)


@contextmanager
def progress_bar(description: str, total: int, *, show: bool = True) -> Iterator:
    """A bar with elapsed time and ETA on stderr, for steps that take more than a few seconds; ``advance(n)`` moves
    it. With ``show=False`` (a step known to be short) nothing is drawn."""
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not show:
        yield lambda n: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(bar_width=20), TaskProgressColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=err(), transient=True) as progress:
        bar = progress.add_task(description, total=total)
        yield lambda n: progress.advance(bar, n)
