"""``localize train --all`` chooses the task's recipe; ``localize tasks show`` shows the choice and
``localize tasks recipe`` pins or unpins one (two fast stand-in candidates replace the real ones)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_home import CliHome
from rich.console import Console

from localize import cli
from localize.demo_data import JANE, JOHN, demo_rows, write_jsonl


@pytest.fixture
def home(tmp_path: Path, monkeypatch, fast_recipe_candidates) -> Iterator[CliHome]:
    workspace = CliHome(tmp_path / "home")
    labels = tmp_path / "labels.jsonl"
    write_jsonl(demo_rows(20, users=(JOHN, JANE)), labels)  # enough for validation rows, so heads calibrate
    monkeypatch.setenv("LOCALIZE_HOME", str(workspace.path))
    monkeypatch.setattr(cli, "console", Console(width=250))
    monkeypatch.setattr(cli, "err_console", Console(width=250, stderr=True))
    assert workspace("tasks", "create", "T", "--labels", "negative,neutral,positive").exit_code == 0
    assert workspace("import", str(labels), "--task", "T").exit_code == 0
    yield workspace


def test_train_all_chooses_the_recipe_and_tasks_show_lists_every_candidate(home: CliHome) -> None:
    before = home("tasks", "show", "T")
    assert before.exit_code == 0, before.output
    assert "recipe: prior-head (the default; `localize train --task T --all` chooses one" in before.output
    trained = home("train", "--task", "T", "--all")
    assert trained.exit_code == 0, trained.output
    record = json.loads(home("tasks", "show", "T", "--json").output)
    winner = record["recipe"]["recipe"]
    assert winner in ("stubborn-head", "loose-head") and record["recipe"]["pinned"] is False
    assert [c["name"] for c in record["recipe"]["choice"]["candidates"]] == ["stubborn-head", "loose-head"]
    assert f"task prior, recipe {winner} chosen" in trained.output
    shown = home("tasks", "show", "T")
    assert shown.exit_code == 0, shown.output
    assert f"recipe: {winner} (chosen on the task's labels)" in shown.output
    assert "3 folds by text" in shown.output and "| stubborn-head" in shown.output.replace("│", "|")
    assert "calibration, corrected on the held-out rows: temperatures x " in shown.output
    assert "Decision rule: " in shown.output and "on users they were not fitted on" in " ".join(shown.output.split())
    assert "task prior: trained again on every text (those the choice held out too)" in " ".join(shown.output.split())


def test_tasks_recipe_pins_and_unpins(home: CliHome) -> None:
    pinned = home("tasks", "recipe", "T", "--pin", "stubborn-head")
    assert pinned.exit_code == 0, pinned.output
    assert "task 'T' now trains with stubborn-head (pinned)" in pinned.output
    assert "recipe: stubborn-head (pinned by an admin)" in home("tasks", "show", "T").output
    unpinned = home("tasks", "recipe", "T", "--unpin")
    assert unpinned.exit_code == 0 and "the next whole-task training chooses its recipe again" in unpinned.output
    unknown = home("tasks", "recipe", "T", "--pin", "best")
    assert unknown.exit_code == 1 and "recipe 'best' is not one of ['stubborn-head', 'loose-head']" in unknown.output
    neither = home("tasks", "recipe", "T")
    assert neither.exit_code == 2 and "name --pin RECIPE or --unpin" in neither.output


def test_a_candidate_scored_from_anothers_fits_shows_whose_seconds_it_shares(monkeypatch) -> None:
    from localize.cli.task_recipes import _print_choice

    recorded = Console(width=250, record=True)
    monkeypatch.setattr(cli, "console", recorded)
    candidate = {"accuracy": 0.8, "macro_f1": 0.7, "score": 0.75}
    _print_choice({"recipe": "mlp-averaged", "folds": 3, "validation_rows": 30, "validation_texts": 10, "seconds": 42,
                   "bootstrap_wins": {"mlp-averaged": 1.0}, "candidates": [
                       {**candidate, "name": "mlp", "seconds": 0.0, "scored_from": "mlp-averaged"},
                       {**candidate, "name": "mlp-averaged", "seconds": 40.0, "scored_from": None}]})
    rows = [line.replace("│", "|") for line in recorded.export_text().splitlines()]
    assert any(line.startswith("| mlp ") and "in mlp-averaged's" in line for line in rows)
    assert any(line.startswith("| mlp-averaged ") and line.rstrip(" |").endswith("40") for line in rows)
