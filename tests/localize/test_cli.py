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
        workspace.setup["reimport"] = workspace("import", str(jsonl), "--task", "T", "--allow-rejected")
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


def test_import_jsonl_reports_the_bad_line_keeps_the_rest_and_exits_1(ws: Workspace) -> None:
    result = ws.setup["import"]
    assert result.exit_code == 1, result.output
    assert "24 created, 0 updated, 0 unchanged, 1 rejected" in result.stdout
    assert "line 5: invalid JSON" in result.stderr
    assert "1 row(s) rejected; the other 24 are stored; --allow-rejected accepts a partial import" in result.stderr
    again = _ok(ws.setup["reimport"])  # --allow-rejected: the same partial import exits 0
    assert "0 created, 0 updated, 24 unchanged, 1 rejected" in again.stdout


def test_import_csv_reports_the_bad_line(ws: Workspace) -> None:
    result = ws.setup["csv"]
    assert result.exit_code == 1
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
    assert [row[3] for row in _cells(ws.setup["stale"].output)] == ["1 active", "1 active"]


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
    assert row[:4] == ["1 active", "head + prior", "12", "0: - / -"]  # version, recipe, labels, validation


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
    _ok(ws("train", "--task", "T", "--user", "jane", *TRAIN, "--force"))  # version 2, active though unscored
    assert "version 1 of user 'jane' is active" in _ok(
        ws("adapters", "activate", "--task", "T", "--user", "jane", "--version", "1", "--force")).output
    refused = ws("adapters", "delete", "--task", "T", "--user", "jane", "--version", "1")
    assert refused.exit_code == 1 and "adapter version 1 is active and serving" in refused.output
    missing = ws("adapters", "activate", "--task", "T", "--user", "jane", "--version", "9")
    assert missing.exit_code == 1 and "adapter version 9 of user 'jane' in task 'T' does not exist" in missing.output
    listed = _ok(ws("adapters", "list", "--task", "T", "--user", "jane")).output
    assert [row[0] for row in _cells(listed)] == ["1 active", "2"]
    assert "deleted version 2" in _ok(ws("adapters", "delete", "--task", "T", "--user", "jane", "--version", "2")).output
    assert [row[0] for row in _cells(_ok(ws("adapters", "list", "--task", "T", "--user", "jane")).output)] == [
        "1 active"]


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


# -- guidance: explicit creation, typos, exit codes ---------------------------------------------------------------
def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_import_into_a_missing_task_needs_create_and_suggests_a_close_name(ws: Workspace, tmp_path: Path) -> None:
    file = _write(tmp_path / "t.jsonl", [{"user": "kim", "text": "gold up", "label": "positive"},
                                         {"user": "kim", "text": "gold down", "label": "negative"}])
    missing = ws("import", str(file), "--task", "t")
    assert missing.exit_code == 1
    assert "task 't' does not exist; did you mean 'T'?; to create it with labels ['negative', 'positive'], add " \
           "--create" in missing.output
    assert f"workspace {ws.home}" in missing.output  # says which workspace was read
    with ws.db() as session:
        assert session.exec(select(User).where(User.name == "kim")).first() is None  # nothing was stored
    created = _ok(ws("import", str(file), "--task", "fresh", "--create"))
    assert "created task 'fresh' labels ['negative', 'positive']: 2 created" in created.stdout


def test_a_new_task_warns_about_labels_that_look_like_typos(ws: Workspace, tmp_path: Path) -> None:
    file = _write(tmp_path / "typo.jsonl", [{"user": "kim", "text": f"text {i}", "label": label}
                                            for i, label in enumerate(["positive", "postive", "negative"])])
    result = _ok(ws("import", str(file), "--task", "typos", "--create"))
    assert "labels 'positive' and 'postive' look alike; if one is a typo, merge it into the other with " \
           "`localize labels rename --task typos positive postive`" in result.stderr
    merged = _ok(ws("labels", "rename", "postive", "positive", "--task", "typos", "--json"))
    assert json.loads(merged.stdout) == {"task": "typos", "label": "postive", "new_label": "positive",
                                         "labels": ["negative", "positive"], "rows": 1, "users": ["kim"]}
    counts = json.loads(_ok(ws("labels", "list", "--task", "typos", "--json")).stdout)
    assert counts == [{"label": "negative", "labels_stored": 1, "users": 1},
                      {"label": "positive", "labels_stored": 2, "users": 1}]


def test_a_label_typo_in_an_existing_task_is_rejected_with_a_suggestion(ws: Workspace, tmp_path: Path) -> None:
    file = _write(tmp_path / "rows.jsonl", [{"user": "lee", "text": "a calm day", "label": "neutral"},
                                            {"user": "lee", "text": "a good day", "label": "postive"}])
    result = ws("import", str(file), "--task", "T")
    assert result.exit_code == 1
    assert "line 2: label 'postive' is not one of task 'T''s labels ['negative', 'neutral', 'positive']; did you " \
           "mean 'positive'?" in result.stderr
    report = json.loads(_ok(ws("import", str(file), "--task", "T", "--allow-rejected", "--json")).stdout)
    assert (report["accepted"], report["unchanged"], [e["line"] for e in report["errors"]]) == (1, 1, [2])
    nothing = _write(tmp_path / "bad.jsonl", [{"user": "lee", "text": "x", "label": "nope"}])
    assert ws("import", str(nothing), "--task", "T", "--allow-rejected").exit_code == 1  # nothing went in


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--task", "T", "--user", "jonh"], "user 'jonh' does not exist; did you mean 'john'?"),
    (["users", "list", "--task", "t"], "task 't' does not exist; did you mean 'T'?"),
    (["adapters", "list", "--task", "T", "--user", "jan"], "user 'jan' does not exist; did you mean 'jane'?"),
    (["labels", "rename", "postiv", "x", "--task", "T"], "label 'postiv' is not one of task 'T''s labels "
                                                         "['negative', 'neutral', 'positive']; did you mean 'positive'?"),
])
def test_did_you_mean_for_tasks_users_and_labels(ws: Workspace, args: list[str], message: str) -> None:
    result = ws(*args)
    assert result.exit_code == 1 and message in result.output, result.output


def test_fanout_with_no_adapters_says_so_and_exits_1(ws: Workspace) -> None:
    _ok(ws("tasks", "create", "empty", "--labels", "a,b"))
    result = ws("fanout", "hello", "--task", "empty")
    assert result.exit_code == 1
    assert "no user of task 'empty' has an active adapter yet; train them first: `localize train --task empty " \
           "--all`" in result.output


# -- listings: --json everywhere, tables that keep every cell whole ------------------------------------------------
@pytest.mark.parametrize(("args", "keys"), [
    (["tasks", "list"], {"task", "labels", "users", "labels_stored"}),
    (["users", "list"], {"user"}),
    (["users", "list", "--task", "T"], {"user", "labels", "active_version", "method", "stale"}),
    (["labels", "list", "--task", "T"], {"label", "labels_stored", "users"}),
    (["adapters", "list", "--task", "T", "--user", "john"], {"version", "recipe", "active", "val_rows",
                                                              "val_accuracy", "val_macro_f1", "reads_prior"}),
    (["jobs", "list"], {"id", "task", "user", "recipe", "state", "args", "error"}),
])
def test_every_listing_prints_json(ws: Workspace, args: list[str], keys: set[str]) -> None:
    rows = json.loads(_ok(ws(*args, "--json")).stdout)
    assert rows and all(keys <= set(row) for row in rows)


def test_a_failed_job_keeps_its_whole_reason_at_80_columns(ws: Workspace, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    file = _write(tmp_path / "few.jsonl", [{"user": "few", "text": "one", "label": "neutral"},
                                           {"user": "few", "text": "two", "label": "positive"}])
    _ok(ws("import", str(file), "--task", "T"))
    failed = ws("train", "--task", "T", "--user", "few", *TRAIN)
    assert failed.exit_code == 1
    reason = "2 labelled texts are too few to train; at least 4 needed"
    assert reason in failed.output  # printed whole under the table
    monkeypatch.setattr(cli, "console", Console(width=80))  # what a terminal of 80 columns or a pipe gets
    listed = _ok(ws("jobs", "list", "--user", "few")).output
    assert "…" not in listed and all(len(line) <= 80 for line in listed.splitlines())
    error_cells = " ".join(row[-1] for row in _cells(listed))  # the error column, over its wrapped lines
    assert " ".join(error_cells.split()) == reason


def test_many_new_versions_scored_on_no_validation_rows_share_one_warning(ws: Workspace, tmp_path: Path) -> None:
    labels = ["negative", "neutral", "positive", "neutral", "negative"]
    rows = [{"user": f"small{u:02d}", "text": f"Small user {u} writes tweet {i}", "label": label}
            for u in range(12) for i, label in enumerate(labels)]
    _ok(ws("import", str(_write(tmp_path / "small.jsonl", rows)), "--task", "T"))
    users = [arg for u in range(12) for arg in ("--user", f"small{u:02d}")]
    result = _ok(ws("train", "--task", "T", *users, *TRAIN))
    assert result.stderr.count("warning:") == 1, result.stderr
    warning = " ".join(result.stderr[result.stderr.index("warning:"):].split())  # unwrapped
    assert warning.startswith("warning: 12 users' new versions are active, though scored on no validation rows")
    assert "small00 (5), small01 (5)" in warning and warning.endswith("small09 (5) and 2 more")


# -- rename and delete --------------------------------------------------------------------------------------------
def test_rename_a_task_and_a_user_then_delete_the_user(ws: Workspace, tmp_path: Path) -> None:
    file = _write(tmp_path / "r.jsonl", [{"user": "rex", "text": f"r {i}", "label": "a"} for i in range(3)])
    _ok(ws("import", str(file), "--task", "ren", "--create", "--labels", "a,b"))
    assert "renamed task 'ren' to 'renamed'" in _ok(ws("tasks", "rename", "ren", "renamed")).output
    assert "renamed user 'rex' to 'rexa'" in _ok(ws("users", "rename", "rex", "rexa")).output
    taken = ws("users", "rename", "rexa", "john")
    assert taken.exit_code == 1 and "user 'john' already exists" in taken.output
    deleted = json.loads(_ok(ws("users", "delete", "rexa", "--yes", "--json")).stdout)
    assert deleted == {"user": "rexa", "labels": 3, "adapter_versions": 0, "jobs": 0, "texts": 3,
                       "files_not_removed": []}
    with ws.db() as session:
        assert session.exec(select(User).where(User.name.in_(["rex", "rexa"]))).first() is None
    assert ws("users", "delete", "rexa", "--yes").exit_code == 1


def test_delete_a_label_keeps_at_least_two(ws: Workspace, tmp_path: Path) -> None:
    file = _write(tmp_path / "d.jsonl", [{"user": "dee", "text": f"d {i}", "label": label}
                                         for i, label in enumerate(["a", "b", "c", "c"])])
    _ok(ws("import", str(file), "--task", "dels", "--create"))
    result = _ok(ws("labels", "delete", "c", "--task", "dels", "--yes"))
    assert "deleted label 'c' in task 'dels' (2 stored label(s)); labels now ['a', 'b']" in result.output
    refused = ws("labels", "delete", "b", "--task", "dels", "--yes")
    assert refused.exit_code == 1 and "a task needs at least 2 labels" in refused.output


# -- prediction from files, scoring, repeatable options -----------------------------------------------------------
def test_predict_file_and_users_repeated_or_comma_separated(ws: Workspace, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("Gold soars to a record high\nOil plunges 5%\n")
    answers = json.loads(_ok(ws("predict", "--file", str(texts), "--task", "T", "-u", "john,jane", "-u", "bob",
                                "--json")).stdout)
    assert [(a["text"], a["user"]) for a in answers] == [
        (t, u) for t in ("Gold soars to a record high", "Oil plunges 5%") for u in ("john", "jane", "bob")]
    none = ws("predict", "--task", "T", "--user", "john")
    assert none.exit_code == 2 and "give texts as arguments or --file FILE" in none.output


def test_score_a_labelled_file(ws: Workspace, tmp_path: Path) -> None:
    rows = demo_rows(12, users=(JOHN, JANE), seed=3)
    file = _write(tmp_path / "test.jsonl", rows + [{"user": "zed", "text": "x", "label": "neutral"}])
    report = json.loads(_ok(ws("score", str(file), "--task", "T", "--json")).stdout)
    by_user = {u["user"]: u for u in report["users"]}
    assert by_user["zed"]["skipped"] == "no such user" and report["users_scored"] == 2
    john_rows = [r for r in rows if r["user"] == "john"]
    texts = tmp_path / "john.txt"
    texts.write_text("".join(r["text"] + "\n" for r in john_rows))
    answers = json.loads(_ok(ws("predict", "--file", str(texts), "--task", "T", "--user", "john", "--json")).stdout)
    hits = sum(a["label"] == r["label"] for a, r in zip(answers, john_rows))
    assert by_user["john"]["rows"] == 12 and by_user["john"]["accuracy"] == pytest.approx(hits / 12)
    assert report["mean_accuracy"] == pytest.approx((by_user["john"]["accuracy"] + by_user["jane"]["accuracy"]) / 2)
    table = _ok(ws("score", str(file), "--task", "T", "--user", "john")).output
    assert [row[0] for row in _cells(table)] == ["john", "mean"]
    unscored = ws("score", str(file), "--task", "T", "--user", "zed")
    assert unscored.exit_code == 1


# -- activation guard and the prior ----------------------------------------------------------------------------------
def test_a_retrained_version_without_validation_rows_is_kept_inactive_unless_forced(ws: Workspace) -> None:
    result = _ok(ws("train", "--task", "T", "--user", "bob", *TRAIN))
    [row] = _cells(result.stdout)
    assert row[1:5] == ["bob", "succeeded", "2 inactive", "0: - / -"]  # no validation rows
    assert "version 2 of user 'bob' is not serving: it was scored on no validation rows" in result.stderr
    assert "`localize adapters activate --task T --user bob --version 2 --force`" in result.stderr
    refused = ws("adapters", "activate", "--task", "T", "--user", "bob", "--version", "2")
    assert refused.exit_code == 1 and "was not activated: it was scored on no validation rows" in refused.output
    _ok(ws("adapters", "activate", "--task", "T", "--user", "bob", "--version", "2", "--force"))
    assert [r["active"] for r in json.loads(_ok(ws("adapters", "list", "--task", "T", "--user", "bob",
                                                   "--json")).stdout)] == [False, True]


@pytest.mark.parametrize("command", ["activate", "delete"])
def test_acting_on_the_task_prior_needs_prior(ws: Workspace, command: str) -> None:
    result = ws("adapters", command, "--task", "T", "--version", "1")
    assert result.exit_code == 2 and "name --user USER, or --prior to act on the task prior" in result.output


# -- the workspace ------------------------------------------------------------------------------------------------
def test_info_names_the_workspace(ws: Workspace) -> None:
    details = json.loads(_ok(ws("info", "--json")).stdout)
    assert details["workspace"] == str(ws.home.resolve()) and details["workspace_from"] == "LOCALIZE_HOME"
    assert details["database"].endswith("localize.db") and details["tasks"] >= 1
    assert details["default_recipe"] == "prior-head" and details["versions"]["torch"]


def test_predict_and_score_more_rows_than_one_request_holds(ws: Workspace, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALIZE_MAX_BATCH_ROWS", "2")  # a batch each 2 rows, under a progress bar
    rows = demo_rows(3, users=(JOHN,), seed=5)
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))
    answers = json.loads(_ok(ws("predict", "--file", str(texts), "--task", "T", "--user", "john", "--json")).stdout)
    assert [a["text"] for a in answers] == [r["text"] for r in rows]
    labelled = _write(tmp_path / "labelled.jsonl", rows)
    report = json.loads(_ok(ws("score", str(labelled), "--task", "T", "--json")).stdout)
    hits = sum(a["label"] == r["label"] for a, r in zip(answers, rows))
    assert [(u["user"], u["rows"], u["accuracy"]) for u in report["users"]] == [("john", 3, pytest.approx(hits / 3))]
