"""The admin CLI, end to end in-process: every command against one temporary home, plus its error exits."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import Result
from rich.console import Console
from sqlmodel import select
from typer.testing import CliRunner

from localize import cli
from localize.db.models import AdapterVersion, Job, Label, User
from localize.db.session import session_scope
from localize.demo_data import JANE, JOHN, demo_rows, write_jsonl
from localize.runtime import Runtime
from localize.services.users import authenticate
from localize.settings import Settings

TRAIN = ["--set", "max_epochs=5", "--method", "head"]


@dataclass
class Workspace:
    home: Path
    runner: CliRunner = field(default_factory=CliRunner)
    setup: dict[str, Result] = field(default_factory=dict)

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(cli.app, ["--home", str(self.home), *args])

    def db(self):  # noqa: ANN201
        return session_scope(Runtime(Settings(home=self.home)).database)


def _cells(output: str) -> list[list[str]]:
    """The body rows of the rich tables in ``output``, as lists of cell texts."""
    return [[cell.strip() for cell in line.strip().strip("│┃").split("│")] for line in output.splitlines()
            if line.strip().startswith("│")]


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """Task T with John's and Jane's generated labels (JSONL) and Bob's (CSV); John trained with ``train --user``,
    the others with ``train --stale``."""
    root = tmp_path_factory.mktemp("cli")
    workspace = Workspace(home=root / "home")
    rows = demo_rows(12, users=(JOHN, JANE))
    jsonl = root / "labels.jsonl"
    write_jsonl(rows, jsonl)
    lines = jsonl.read_text().splitlines()
    lines.insert(4, '{"user": "john", "text": "broken')  # line 5
    jsonl.write_text("\n".join(lines) + "\n")
    csv = root / "bob.csv"
    bob = [f"bob,{r['text'].replace(',', ' ')},{r['label']}" for r in rows[:8]]
    csv.write_text("user,text,label\n" + "\n".join(bob[:1] + ["bob,a meh tweet,meh"] + bob[1:]) + "\n")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOCALIZE_HOME", str(workspace.home))  # --home sets it; restored after the module
        patch.setattr(cli, "console", Console(width=200))  # no wrapping, so the output can be read back
        patch.setattr(cli, "err_console", Console(width=200, stderr=True))
        workspace.setup["create"] = workspace("tasks", "create", "T", "--labels", "negative,neutral,positive")
        workspace.setup["import"] = workspace("import", str(jsonl), "--task", "T")
        workspace.setup["reimport"] = workspace("import", str(jsonl), "--task", "T")
        workspace.setup["csv"] = workspace("import", str(csv), "--task", "T")
        workspace.setup["train"] = workspace("train", "--task", "T", "--user", "john", *TRAIN)
        workspace.setup["stale"] = workspace("train", "--task", "T", "--stale", *TRAIN)
        workspace.setup["stale-again"] = workspace("train", "--task", "T", "--stale", *TRAIN)
        yield workspace


# -- tasks, labels, users -----------------------------------------------------------------------------------------
def test_tasks_create_and_list(ws: Workspace) -> None:
    assert "created task 'T' with labels ['negative', 'neutral', 'positive']" in _ok(ws.setup["create"]).output
    listed = _ok(ws("tasks", "list")).output
    assert "T" in listed and "negative, neutral, positive" in listed
    duplicate = ws("tasks", "create", "T", "--labels", "a,b")
    assert duplicate.exit_code == 1 and "task 'T' already exists" in duplicate.output
    bad = ws("tasks", "create", "U", "--labels", "only")
    assert bad.exit_code == 1 and "at least 2 labels" in bad.output


def test_import_jsonl_reports_the_bad_line_and_keeps_the_rest(ws: Workspace) -> None:
    result = _ok(ws.setup["import"])
    assert "24 created, 0 updated, 0 unchanged, 1 rejected" in result.stdout
    assert "line 5: invalid JSON" in result.stderr
    again = _ok(ws.setup["reimport"])
    assert "0 created, 0 updated, 24 unchanged, 1 rejected" in again.stdout


def test_import_csv_reports_the_bad_line(ws: Workspace) -> None:
    result = _ok(ws.setup["csv"])
    assert "8 created, 0 updated, 0 unchanged, 1 rejected" in result.stdout
    assert "line 3: label 'meh' is not one of task 'T''s labels" in result.stderr
    with ws.db() as session:
        bob = session.exec(select(User).where(User.name == "bob")).one()
        assert len(session.exec(select(Label).where(Label.user_id == bob.id)).all()) == 8


def test_import_with_only_bad_rows_exits_1(ws: Workspace, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user": "john", "text": "x", "label": "nope"}\n')
    result = ws("import", str(bad), "--task", "T")
    assert result.exit_code == 1 and "line 1: label 'nope'" in result.output


def test_users_list_with_a_task(ws: Workspace) -> None:
    output = _ok(ws("users", "list", "--task", "T")).output
    rows = {row[0]: row[1:] for row in _cells(output)}
    assert set(rows) == {"john", "jane", "bob"}
    assert (rows["john"][0], rows["jane"][0], rows["bob"][0]) == ("12", "12", "8")
    assert rows["jane"][1] == "v1 head" and rows["jane"][2] == ""  # trained, not stale
    assert "3 user(s)" in output


# -- training -----------------------------------------------------------------------------------------------------
def test_train_one_user(ws: Workspace) -> None:
    output = _ok(ws.setup["train"]).output
    assert "john" in output and "succeeded" in output
    with ws.db() as session:
        john = session.exec(select(User).where(User.name == "john")).one()
        job = session.exec(select(Job).where(Job.user_id == john.id).order_by(Job.id)).first()
        assert job.state == "succeeded" and job.args["max_epochs"] == 5 and job.args["method"] == "head"


def test_train_stale_then_nothing_left(ws: Workspace) -> None:
    summary = _cells(_ok(ws.setup["stale"]).output)
    assert sorted((row[1], row[2]) for row in summary) == [("bob", "succeeded"), ("jane", "succeeded")]
    assert "nothing to train" in _ok(ws.setup["stale-again"]).output
    with ws.db() as session:
        trained = session.exec(select(User.name).join(AdapterVersion, AdapterVersion.user_id == User.id)
                               .where(AdapterVersion.is_active)).all()
        assert sorted(trained) == ["bob", "jane", "john"]


def test_train_summary_shows_the_version_number(ws: Workspace) -> None:
    # Jane's and Bob's first adapters are version 1 each, though their rows have ids 2 and 3.
    assert [row[3] for row in _cells(ws.setup["stale"].output)] == ["1", "1"]


# -- prediction ---------------------------------------------------------------------------------------------------
def test_predict_as_json_and_table(ws: Workspace) -> None:
    text = "Gold soars to a record high"
    answers = json.loads(_ok(ws("predict", text, "--task", "T", "--user", "john", "--user", "jane", "--json")).stdout)
    assert [(a["user"], a["text"], a["version"], a["source"]) for a in answers] == [
        ("john", text, 1, "user"), ("jane", text, 1, "user")]
    assert all(a["label"] in ("negative", "neutral", "positive") for a in answers)
    table = _ok(ws("predict", text, "--task", "T", "--user", "john")).output
    assert "john" in table and "v1 (user)" in table


def test_fanout_to_all_and_to_some(ws: Workspace) -> None:
    everyone = json.loads(_ok(ws("fanout", "Oil plunges 5%", "--task", "T", "--json")).stdout)
    assert [a["user"] for a in everyone] == ["bob", "jane", "john"]
    some = json.loads(_ok(ws("fanout", "Oil plunges 5%", "--task", "T", "--users", "jane,john", "--json")).stdout)
    assert [a["user"] for a in some] == ["jane", "john"]
    missing = ws("fanout", "Oil plunges 5%", "--task", "T", "--users", "zed")
    assert missing.exit_code == 1 and "['zed'] have no active adapter" in missing.output


# -- adapters and jobs --------------------------------------------------------------------------------------------
def test_adapters_list(ws: Workspace) -> None:
    output = _ok(ws("adapters", "list", "--task", "T", "--user", "jane")).output
    [row] = _cells(output)
    assert row[:4] == ["1", "head", "*", "12"]


def test_adapters_export(ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert "exported version 1" in _ok(ws("adapters", "export", "--task", "T", "--user", "jane", "--out", str(out))).output
    files = {p.name for p in out.iterdir()}
    assert {"head.safetensors", "localize.json"} <= files
    assert json.loads((out / "localize.json").read_text())["labels"] == ["negative", "neutral", "positive"]
    again = ws("adapters", "export", "--task", "T", "--user", "jane", "--out", str(out))
    assert again.exit_code == 1 and "is not empty" in again.output


def test_jobs_list(ws: Workspace) -> None:
    output = _ok(ws("jobs", "list")).output
    assert output.count("succeeded") >= 3 and "job(s)" in output
    assert "0 job(s)" in _ok(ws("jobs", "list", "--state", "queued")).output


def test_users_key_prints_a_working_key(ws: Workspace) -> None:
    key = _ok(ws("users", "key", "john")).stdout.strip()
    assert key.startswith("lk_")
    with ws.db() as session:
        assert authenticate(session=session, key=key).name == "john"
    newer = _ok(ws("users", "key", "john")).stdout.strip()
    with ws.db() as session:
        assert authenticate(session=session, key=key) is None and authenticate(session=session, key=newer) is not None


def test_activate_delete_and_refuse_to_delete_the_active_version(ws: Workspace) -> None:
    _ok(ws("train", "--task", "T", "--user", "jane", *TRAIN))  # version 2, active
    assert "version 1 is active" in _ok(ws("adapters", "activate", "--task", "T", "--user", "jane", "--version", "1")).output
    refused = ws("adapters", "delete", "--task", "T", "--user", "jane", "--version", "1")
    assert refused.exit_code == 1 and "adapter version 1 is active and serving" in refused.output
    missing = ws("adapters", "activate", "--task", "T", "--user", "jane", "--version", "9")
    assert missing.exit_code == 1 and "adapter version 9 of user 'jane' in task 'T' does not exist" in missing.output
    listed = _ok(ws("adapters", "list", "--task", "T", "--user", "jane")).output
    assert [(row[0], row[2]) for row in _cells(listed)] == [("1", "*"), ("2", "")]
    assert "deleted version 2" in _ok(ws("adapters", "delete", "--task", "T", "--user", "jane", "--version", "2")).output
    assert [row[0] for row in _cells(_ok(ws("adapters", "list", "--task", "T", "--user", "jane")).output)] == ["1"]


# -- errors -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["users", "list", "--task", "nope"], 1, "task 'nope' does not exist"),
        (["train", "--task", "nope", "--user", "john"], 1, "task 'nope' does not exist"),
        (["train", "--task", "T", "--user", "nobody"], 1, "user 'nobody' does not exist"),
        (["predict", "hi", "--task", "T", "--user", "nobody"], 1, "user 'nobody' does not exist"),
        (["adapters", "list", "--task", "T", "--user", "nobody"], 1, "user 'nobody' does not exist"),
        (["train", "--task", "T", "--user", "john", "--set", "max_epochs"], 2, "'max_epochs' must look like key=value"),
        (["train", "--task", "T", "--user", "john", "--set", "bogus=1"], 2, "unknown training argument(s) ['bogus']"),
        (["train", "--task", "T", "--user", "john", "--set", "max_epochs=0"], 2, "max_epochs=0 must be >= 1"),
        (["train", "--task", "T", "--user", "john", "--method", "nope"], 2, "method 'nope' is not one of"),
        (["train", "--task", "T"], 2, "name --user, --all, --stale or --prior"),
        (["train", "--task", "T", "--all", "--stale"], 2, "choose one of --user, --all and --stale"),
        (["predict", "", "--task", "T", "--user", "john"], 1, "text 0: text is empty"),
    ],
)
def test_errors_exit_non_zero_with_a_clear_message(ws: Workspace, args: list[str], code: int, message: str) -> None:
    result = ws(*args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
