"""``localize eval``: per-user accuracy on the shared-data layout (train.jsonl / test.jsonl), in a scratch workspace."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from localize import cli
from localize.demo_data import JANE, JOHN, DemoUser, demo_rows, write_jsonl
from localize.errors import ValidationError
from localize.evaluation import run_evaluation
from localize.settings import get_settings

JOE = DemoUser("joe", {"gold": +1, "oil": +1})
TINY = DemoUser("tiny", {"gold": -1})
N_TRAIN, N_TEST = 16, 6
USER_KEYS = {"user", "n_train", "n_test", "accuracy", "macro_f1", "train_seconds"}


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


def _check_shape(results: dict, users: list[str], max_epochs: int) -> None:
    summary = results["summary"]
    assert summary["users"] == len(users) and summary["method"] == "head"
    assert summary["training_args"]["max_epochs"] == max_epochs
    assert summary["labels"] == ["negative", "neutral", "positive"]
    assert [u["user"] for u in results["users"]] == users
    for user in results["users"]:
        assert set(user) == USER_KEYS
        assert (user["n_train"], user["n_test"]) == (N_TRAIN, N_TEST)
        assert 0.0 <= user["accuracy"] <= 1.0 and 0.0 <= user["macro_f1"] <= 1.0
    assert summary["mean_accuracy"] == pytest.approx(sum(u["accuracy"] for u in results["users"]) / len(users))
    assert summary["mean_macro_f1"] == pytest.approx(sum(u["macro_f1"] for u in results["users"]) / len(users))


def test_run_evaluation_scores_each_qualifying_user(data_dir: Path, own_home: Path) -> None:
    results = run_evaluation(data_dir=data_dir, min_train=10, min_test=4, options=["max_epochs=3"])

    _check_shape(results, ["jane", "joe", "john"], max_epochs=3)  # tiny has 3 train rows: left out
    assert not own_home.exists()


def test_cli_eval_writes_results_json_and_leaves_the_home_alone(data_dir: Path, own_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = CliRunner().invoke(cli.app, ["--home", str(own_home), "eval", "--data", str(data_dir), "--out", str(out),
                                          "--users", "john", "--min-train", "10", "--min-test", "4",
                                          "--set", "max_epochs=3", "--set", "method.hidden=0"])

    assert result.exit_code == 0, result.output
    assert "1 users, method head" in result.output and f"wrote {out}" in result.output
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
