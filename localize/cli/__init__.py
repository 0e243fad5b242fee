"""The admin CLI ``localize``: a thin door onto the same services the HTTP API uses.

One module per command group registers its commands onto ``root.app``; this package imports them all. Commands
import their services inside the function body, so a command that only touches the database never loads torch."""
from __future__ import annotations

from rich.console import Console

from localize.cli.root import app

# Commands print through common.out() and common.err(), which read these two, so tests can swap them. No log_path:
# a progress line says what happened, not which line of the CLI logged it.
console = Console(log_path=False)
err_console = Console(stderr=True, log_path=False)

# The order here is the order of --help.
from localize.cli import workspace, tasks, users, labels, jobs, predict, adapters  # noqa: E402,F401,I001
from localize.cli import processes, demo, evaluate  # noqa: E402,F401,I001

from localize.cli import webhooks  # noqa: E402,F401
from localize.cli import task_recipes  # noqa: E402,F401

from localize.cli.root import reflow_help  # noqa: E402

reflow_help(app)  # after every module above (and any added below it) has registered its commands

__all__ = ["app", "console", "err_console"]
