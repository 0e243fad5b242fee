"""``localize eval``: per-user accuracy on the shared-data layout (train.jsonl / test.jsonl); the fast harness, the
services path and the full report."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from localize import cli
from localize.demo_data import JANE, JOHN, DemoUser, demo_rows, write_jsonl
from localize.errors import ValidationError
from localize.evaluation import Recipe, load_eval_data, run_evaluation, run_report
from localize.evaluation.baselines import BASELINES
from localize.evaluation.recipes import comparison_recipes, default_recipe
from localize.evaluation.report import evaluate_data_set, write_report
from localize.evaluation.runner import recipe_for
from localize.evaluation.through_services import run_service_evaluation
from localize.settings import get_settings
from localize.training_args import TrainingArguments

JOE = DemoUser("joe", {"gold": +1, "oil": +1})
TINY = DemoUser("tiny", {"gold": -1})
N_TRAIN, N_TEST = 16, 6
USER_KEYS = {"user", "n_train", "n_test", "accuracy", "macro_f1", "train_seconds"}
HARNESS_KEYS = USER_KEYS | {"adapter_bytes"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three users with 16 train and 6 test rows each, and one (``tiny``) with too few to qualify."""
    folder = tmp_path_factory.mktemp("eval-data")
    rows = demo_rows(N_TRAIN + N_TEST, seed=3, users=(JOHN, JANE, JOE))
    train, test = [], []
    for user in (JOHN, JANE, JOE):
        mine = [r for r in rows if r["user"] == user.name]
        train += [{**r, "split": "train"} for r in mine[:N_TRAIN]]
        test += [{**r, "split": "test"} for r in mine[N_TRAIN:]]
    tiny = demo_rows(5, seed=4, users=(TINY,))
    train += [{**r, "split": "train"} for r in tiny[:3]]
    test += [{**r, "split": "test"} for r in tiny[3:]]
    order = ("user", "item", "text", "label", "split")
    write_jsonl([{k: r[k] for k in order} for r in train], folder / "train.jsonl")
    write_jsonl([{k: r[k] for k in order} for r in test], folder / "test.jsonl")
    return folder


@pytest.fixture
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The user's LOCALIZE_HOME, which an evaluation must never touch."""
    home = tmp_path / "own-home"
    monkeypatch.setenv("LOCALIZE_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def _check_shape(results: dict, users: list[str], max_epochs: int, keys: set[str] = HARNESS_KEYS) -> None:
    summary = results["summary"]
    assert summary["users"] == len(users) and summary["method"] == "lora"  # the default recipe's prior method
    assert summary["training_args"]["train_scope"] == "head"
    assert summary["training_args"]["max_epochs"] == max_epochs
    assert summary["labels"] == ["negative", "neutral", "positive"]
    assert [u["user"] for u in results["users"]] == users
    for user in results["users"]:
        assert set(user) == keys
        assert (user["n_train"], user["n_test"]) == (N_TRAIN, N_TEST)
        assert 0.0 <= user["accuracy"] <= 1.0 and 0.0 <= user["macro_f1"] <= 1.0
    assert summary["mean_accuracy"] == pytest.approx(sum(u["accuracy"] for u in results["users"]) / len(users))
    assert summary["mean_macro_f1"] == pytest.approx(sum(u["macro_f1"] for u in results["users"]) / len(users))


def test_run_evaluation_scores_each_qualifying_user_and_the_baselines(data_dir: Path, own_home: Path) -> None:
    results = run_evaluation(data_dir=data_dir, min_train=10, min_test=4, options=["max_epochs=3"])

    _check_shape(results, ["jane", "joe", "john"], max_epochs=3)  # tiny has 3 train rows: left out
    assert [b["name"] for b in results["baselines"]] == list(BASELINES)
    assert all(b["users"] == 3 for b in results["baselines"])
    assert not own_home.exists()


def test_service_evaluation_runs_the_same_recipe_through_the_services(data_dir: Path, own_home: Path) -> None:
    results = run_service_evaluation(data_dir=data_dir, min_train=10, min_test=4, users=["john"],
                                     options=["max_epochs=3"])

    _check_shape(results, ["john"], max_epochs=3, keys=USER_KEYS)
    assert not own_home.exists()


def test_service_evaluation_scores_macro_f1_as_the_harness_does(data_dir: Path, own_home: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the labels in the user's truth or predictions: a user whose test rows all carry one label, answered
    perfectly, scores 1.0 in both paths (not 1/3 for the two labels nobody used)."""
    import localize.evaluation.through_services as through_services

    folder = tmp_path / "one-label"
    folder.mkdir()
    (folder / "train.jsonl").write_bytes((data_dir / "train.jsonl").read_bytes())
    rows = [json.loads(line) for line in (data_dir / "test.jsonl").read_text().splitlines()]
    rows = [{**r, "label": "positive"} if r["user"] == "john" else r for r in rows]
    write_jsonl(rows, folder / "test.jsonl")
    truth = {(r["user"], r["text"]): r["label"] for r in rows}
    monkeypatch.setattr(through_services, "predict", lambda *, session, runtime, requests, allow_prior: [
        SimpleNamespace(label=truth[(q.user, q.text)]) for q in requests])

    results = run_service_evaluation(data_dir=folder, min_train=10, min_test=4, users=["john"],
                                     options=["max_epochs=1"])

    assert results["users"][0]["accuracy"] == results["users"][0]["macro_f1"] == 1.0


def test_cli_eval_writes_results_json_and_leaves_the_home_alone(data_dir: Path, own_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = CliRunner().invoke(cli.app, ["--home", str(own_home), "eval", "--data", str(data_dir), "--out", str(out),
                                          "--users", "john", "--min-train", "10", "--min-test", "4",
                                          "--set", "max_epochs=3", "--set", "prior_max_epochs=1",
                                          "--no-baselines"])

    assert result.exit_code == 0, result.output
    assert "1 users, recipe prior-head" in result.output and f"wrote {out}" in result.output
    _check_shape(json.loads(out.read_text()), ["john"], max_epochs=3)
    assert not (own_home / "localize.db").exists() and not own_home.exists()


@pytest.mark.parametrize(
    ("users", "match"),
    [(["zed"], r"user\(s\) \['zed'\] are not in the data"),
     (["tiny"], r"user\(s\) \['tiny'\] are not in the data or have fewer than 10 train")],
)
def test_unknown_or_unqualified_users_are_refused(data_dir: Path, own_home: Path, users: list[str], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        run_evaluation(data_dir=data_dir, users=users, min_train=10, min_test=4)
    assert not own_home.exists()


def test_cli_eval_unknown_user_exits_1(data_dir: Path, own_home: Path) -> None:
    result = CliRunner().invoke(cli.app, ["--home", str(own_home), "eval", "--data", str(data_dir), "--users", "zed",
                                          "--min-train", "10", "--min-test", "4"])
    assert result.exit_code == 1 and "['zed'] are not in the data" in result.output


def test_no_qualifying_user_and_missing_files_are_errors(data_dir: Path, tmp_path: Path, own_home: Path) -> None:
    with pytest.raises(ValidationError, match="no user has >= 1000 train and >= 4 test rows"):
        run_evaluation(data_dir=data_dir, min_train=1000, min_test=4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValidationError, match="train.jsonl' does not exist"):
        run_evaluation(data_dir=empty)


def test_report_has_a_table_per_data_set_learning_curves_and_calibration(data_dir: Path, tmp_path: Path,
                                                                         base) -> None:  # noqa: ANN001
    data = load_eval_data(data_dir, min_train=10, min_test=4)
    recipes = [Recipe("default (head + prior)", TrainingArguments(max_epochs=2, method="head",
                                                                   method_options={"hidden": 16})),
               Recipe("head linear", TrainingArguments(max_epochs=2, init_from_prior=False, method="head",
                                                       method_options={"hidden": 0}), max_users=1),
               Recipe("capped above the user count", TrainingArguments(max_epochs=1, method="head"),
                      "a variant; first 16 users", max_users=16)]
    entry = evaluate_data_set(data, base, recipes, curve_sizes=(8, None))
    path = write_report([entry], tmp_path / "reports", command="localize eval --data X --report reports")

    text = path.read_text()
    assert path.name == "accuracy.md" and text.startswith("# Per-user accuracy")  # an unknown data set's origin
    assert "`localize eval --data X --report reports`" in text
    for name in [*BASELINES, "default recipe", "head linear"]:
        assert f"| {name} |" in text or f"| **{name}** |" in text, name
    assert "| a variant |" in text  # it scored every user, so it is no subset
    rows = {r["summary"]["name"]: r["summary"] for r in entry["results"]}
    assert rows["head linear"]["users"] == 1 and rows["default (head + prior)"]["users"] == 3
    assert rows["default (head + prior)"]["adapter_bytes"] > rows["head linear"]["adapter_bytes"] > 0
    assert [p["labels"] for p in entry["learning_curves"]["default (head + prior)"]] == [8, None]
    assert entry["learning_curves"]["per_user_lr"][0]["mean_train_labels"] == 8
    assert 0.0 <= entry["calibration"]["ece"] <= 1.0
    assert len(entry["calibration"]["per_user_thresholds"]) == 3
    for png in ("learning_curves", "calibration"):
        figure = tmp_path / "reports" / f"{data.name}_{png}.png"
        assert f"]({figure.name})" in text and figure.read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "reports" / "accuracy.json").read_text())[0]["data_set"] == data.name


def test_default_recipe_is_the_settings_default_method_with_default_arguments(own_home: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = recipe_for(None, [])
    assert recipe.args == TrainingArguments(method=get_settings().default_method)
    assert recipe.name == f"default (head on the {recipe.args.method} task prior)"
    assert comparison_recipes()[0] == default_recipe(get_settings().default_method)
    named = recipe_for("lora", ["method.r=4", "max_epochs=2"])
    assert (named.args.method, named.args.method_options, named.args.max_epochs) == ("lora", {"r": 4}, 2)
    assert named.name == "lora + prior"
    assert recipe_for(None, ["prior_members=3"]).name == "prior-head, 3 task priors side by side"  # not "lora"
    monkeypatch.setenv("LOCALIZE_DEFAULT_METHOD", "ia3")
    get_settings.cache_clear()
    assert recipe_for(None, []).args.method == "ia3"


def test_cli_report_refuses_single_recipe_options(data_dir: Path, own_home: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["eval", "--data", str(data_dir), "--report", str(tmp_path / "r"),
                                          "--method", "lora"])
    assert result.exit_code == 1 and "--report runs every recipe" in result.output
    result = CliRunner().invoke(cli.app, ["eval", "--data", str(data_dir), "--data", str(data_dir)])
    assert result.exit_code == 1 and "only --report takes several data sets" in result.output


@pytest.fixture
def one_candidate(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The report's parts (other processes) choose among one fast candidate: the environment reaches them."""
    monkeypatch.setenv("LOCALIZE_RECIPE_CANDIDATES", "pooled-head")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_report_is_one_command(data_dir: Path, own_home: Path, tmp_path: Path, one_candidate: None) -> None:
    out = tmp_path / "reports"
    result = CliRunner().invoke(cli.app, ["eval", "--data", str(data_dir), "--report", str(out), "--quick",
                                          "--min-train", "10", "--min-test", "4"])

    assert result.exit_code == 0, result.output
    text = (out / "accuracy.md").read_text()
    assert f"--report {out} --quick --min-train 10 --min-test 4`" in text
    assert "| **recipe chosen (pooled-head)** | recipe | 3 |" in text
    entry = json.loads((out / "accuracy.json").read_text())[0]
    assert f"### {entry['data_set']}: recipe chosen" in text and "| **pooled-head** |" in text
    assert entry["recipe_choice"]["recipe"] == "pooled-head" and entry["recipe_choice"]["folds"] == 3
    assert [p["labels"] for p in entry["learning_curves"]["chosen: pooled-head"]] == [25, None]
    assert (out / f"{entry['data_set']}_calibration.png").is_file()


def test_report_keeps_finished_parts_and_a_rerun_reuses_only_matching_ones(data_dir: Path, own_home: Path,
                                                                           tmp_path: Path, one_candidate: None) -> None:
    saved = tmp_path / "saved"
    options = dict(data_dirs=[data_dir], command="c", quick=True, save_encodings=saved, min_train=10, min_test=4)
    first = run_report(out_dir=tmp_path / "first", **options)
    assert len(list((saved / "parts").glob("*.json"))) == 1

    messages: list[str] = []
    second = run_report(out_dir=tmp_path / "second", progress=messages.append, **options)
    assert any("reusing the finished reference part" in m for m in messages)
    # the kept part round-trips to the same report; only the run's date and how the texts were encoded differ
    def figures(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines()
                if not line.startswith("Generated by") and " users scored, " not in line]

    assert figures(second) == figures(first)
    assert "read from encodings an earlier run saved" in second.read_text()
    assert "encoding every distinct text once took" in first.read_text()

    messages.clear()
    run_report(out_dir=tmp_path / "third", progress=messages.append, curve_sizes=(8, None), **options)
    assert not any("reusing" in m for m in messages)  # other curve sizes: a different part
    assert len(list((saved / "parts").glob("*.json"))) == 2


_ORPHAN_PARENT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from localize.evaluation.runner import exit_with_parent

if __name__ == "__main__":
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)  # a part that would run long after its parent is gone
    time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_report_worker_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)  # no chance to shut its pool down
    parent.wait()

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):
            return False

    deadline = time.monotonic() + 20
    while running(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    still = running(worker)
    if still:
        os.kill(worker, signal.SIGKILL)
    assert not still, "the report worker went on running after its parent was killed"
