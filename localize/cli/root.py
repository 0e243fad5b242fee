"""The root Typer app and its global options; the command modules register onto it."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from localize.cli.start_up import LocalizeApp, resolve_annotations

app = LocalizeApp(help="localize: one frozen base model, a tiny adapter per user.", no_args_is_help=True,
                   pretty_exceptions_enable=False)


@app.callback()
def main(
    home: Annotated[Optional[Path], typer.Option(help="Workspace folder (sets LOCALIZE_HOME).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    if home is not None:
        os.environ["LOCALIZE_HOME"] = str(home)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def reflow_help(typer_app: typer.Typer) -> None:
    """Every command's help is its docstring with each paragraph on one line: typer keeps the source's line breaks
    inside all but the first paragraph, which broke sentences mid-line in ``--help``. It also resolves each
    callback's annotations once (see ``start_up``)."""
    import inspect

    for info in (typer_app.registered_callback, typer_app.info, *typer_app.registered_groups):
        resolve_annotations(getattr(info, "callback", None))
    for command in typer_app.registered_commands:
        resolve_annotations(command.callback)
        if command.help is None and command.callback is not None and command.callback.__doc__:
            paragraphs = inspect.cleandoc(command.callback.__doc__).split("\n\n")
            command.help = "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)
