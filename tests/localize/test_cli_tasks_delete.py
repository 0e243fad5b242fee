"""``localize tasks delete T``: says what it deletes, asks unless --yes, and then deletes it."""
from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from localize import cli


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LOCALIZE_HOME", str(home))
    monkeypatch.setattr(cli, "console", Console(width=200))
    monkeypatch.setattr(cli, "err_console", Console(width=200, stderr=True))
    labels = tmp_path / "labels.csv"
    labels.write_text("user,text,label\njohn,gold up,positive\njane,gold up,negative\njohn,oil down,negative\n")
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # noqa: A002
        return runner.invoke(cli.app, ["--home", str(home), *args], input=input)

    assert invoke("tasks", "create", "T", "--labels", "negative,positive").exit_code == 0
    assert invoke("import", str(labels), "--task", "T").exit_code == 0
    return invoke


def test_tasks_delete_asks_says_what_it_deletes_and_deletes(run) -> None:
    refused = run("tasks", "delete", "T", input="n\n")
    assert refused.exit_code == 1
    assert "task 'T' holds 3 label(s) of 2 user(s), 0 adapter version(s)" in refused.output
    assert "users and their keys stay" in refused.output
    assert "T" in run("tasks", "list").output.split("labels stored")[1]

    deleted = run("tasks", "delete", "T", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "deleted task 'T': 3 label(s), 0 adapter version(s), 0 job(s)" in deleted.output
    assert "T" not in run("tasks", "list").output.split("labels stored")[1]
    assert "john" in run("users", "list").output

    missing = run("tasks", "delete", "T", "--yes")
    assert missing.exit_code == 1 and "task 'T' does not exist" in missing.output
