"""A workspace the CLI tests drive: ``home("tasks", "list")`` runs ``localize --home PATH tasks list``."""
from __future__ import annotations

from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from localize import cli


class CliHome:
    def __init__(self, path: Path) -> None:
        self.path, self.runner = path, CliRunner()

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(cli.app, ["--home", str(self.path), *args])
