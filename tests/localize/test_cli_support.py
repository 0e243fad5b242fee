"""What the CLI stands on, tested without training: recipe names, typo hints, staleness after a new task prior,
the default workspace, and a database-only command that starts without torch (and a CLI import that stays light)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import Session

from localize.db.models import AdapterVersion, Label, Task, Text, User
from localize.recipes import DEFAULT_RECIPE, applicable_arguments, recipe_name
from localize.services.adapters import activation_concern, stale_users
from localize.settings import Settings, default_home
from localize.suggest import did_you_mean, lookalike_pairs
from localize.training_args import TrainingArguments

REPO = Path(__file__).resolve().parents[2]


def test_the_default_recipe_has_its_own_name_and_only_its_arguments() -> None:
    default = TrainingArguments(method=DEFAULT_RECIPE)
    assert default == TrainingArguments()  # the name selects the default recipe, stored as its prior's method
    args = default.to_dict()
    assert recipe_name(args) == "prior-head" and recipe_name(args, prior=True) == "prior-head (task prior: lora)"
    shown = applicable_arguments(args)
    assert {"head_prior_strength", "class_weighting", "validation_fraction"} <= set(shown)
    assert not {"max_epochs", "patience", "learning_rate", "prior_max_epochs", "method_options"} & set(shown)
    prior = applicable_arguments(args, prior=True)
    assert {"prior_max_epochs", "method_options"} <= set(prior) and "head_prior_strength" not in prior
    assert "decision_offsets" in shown and "decision_offsets" not in prior  # users' heads decide, not the prior
    epochs = TrainingArguments(method="lora", method_options={}).to_dict()
    assert recipe_name(epochs) == "lora + prior" and "max_epochs" in applicable_arguments(epochs)
    assert "head_fit" not in applicable_arguments(epochs)
    mlp = TrainingArguments(head_hidden=256).to_dict()  # MLP heads on the prior: trained by epochs, not MAP
    assert recipe_name(mlp) == "prior-mlp" and recipe_name(mlp, prior=True) == "prior-mlp (task prior: lora)"
    assert "max_epochs" in applicable_arguments(mlp)
    stacked = TrainingArguments(head_hidden=256, head_ensemble=5, prior_members=3).to_dict()
    assert recipe_name(stacked) == "prior-mlp (5 heads averaged), 3 task priors side by side"
    with pytest.raises(ValueError, match="'prior-head'"):
        TrainingArguments(method="nope")


def test_typo_hints() -> None:
    assert did_you_mean("gold-sentimnet", ["gold-sentiment", "oil"]) == "; did you mean 'gold-sentiment'?"
    assert did_you_mean("zed", ["john", "jane"]) == ""
    assert lookalike_pairs(["positive", "postive", "negative", "neutral"]) == [("positive", "postive")]
    assert lookalike_pairs(["negative", "neutral", "positive"]) == []
    # A label that adds a word to another is a label of its own (the shared data sets' offensive / not_offensive).
    assert lookalike_pairs(["not_offensive", "offensive"]) == []
    assert lookalike_pairs(["abusive", "not-abusive", "very positive", "positive", "Not Hate", "hate"]) == []
    assert lookalike_pairs(["not_offensive", "not_ofensive"]) == [("not_ofensive", "not_offensive")]


def test_activation_concern() -> None:
    active = AdapterVersion(task_id=1, version=3, method="lora", store_key="k", metrics={"val_macro_f1": 0.8})
    scored = {"val_rows": 20, "val_macro_f1": 0.78}
    assert activation_concern(metrics=scored, active=active) is None  # within noise
    assert "clearly below active version 3's 0.800" in activation_concern(
        metrics={**scored, "val_macro_f1": 0.7}, active=active)
    assert "no validation rows" in activation_concern(metrics={"val_rows": 0, "train_rows": 4}, active=active)
    assert activation_concern(metrics={"val_rows": 0}, active=None) is None  # a first version serves


def test_a_new_task_prior_makes_heads_on_the_old_one_stale(runtime) -> None:
    with Session(runtime.database) as session:
        task, user = Task(name="t", labels=["a", "b"]), User(name="u")
        session.add_all([task, user, Text(sha256="0" * 64, body="x")])
        session.commit()
        label = Label(user_id=user.id, task_id=task.id, text_id=1, label="a")
        session.add(label)
        session.commit()
        old_prior = AdapterVersion(task_id=task.id, user_id=None, version=1, method="lora", store_key="p",
                                   is_active=True)
        session.add(old_prior)
        session.commit()
        session.add(AdapterVersion(task_id=task.id, user_id=user.id, version=1, method="lora", store_key="h",
                                   is_active=True, n_labels=1, labels_updated_at=label.updated_at,
                                   encoder_version_id=old_prior.id))
        session.commit()
        assert stale_users(session=session, task=task) == []
        old_prior.is_active = False
        session.add(AdapterVersion(task_id=task.id, user_id=None, version=2, method="lora", store_key="p",
                                   is_active=True))
        session.commit()
        assert [u.name for u in stale_users(session=session, task=task)] == ["u"]


def test_the_default_workspace_is_the_per_user_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOCALIZE_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert Settings().home == default_home() == tmp_path / "data" / "localize"
    monkeypatch.setenv("LOCALIZE_HOME", str(tmp_path / "mine"))
    assert Settings().home == tmp_path / "mine"


# Modules a database-only command has no use for: the model side (torch and what loads it, the adapter store with
# safetensors) and Alembic once the schema is current.
_HEAVY = ("torch", "transformers", "numpy", "safetensors", "alembic", "localize.store", "localize.engine",
          "localize.base_model", "localize.training")


def _imported(code: str, env: dict[str, str]) -> list[str]:
    """Which of ``_HEAVY`` a fresh interpreter holds after running ``code``."""
    probe = (f"import sys, json\n{code}\n"
             f"print(json.dumps(sorted(m for m in {_HEAVY!r} if m in sys.modules)))")
    child = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=REPO)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.splitlines()[-1])


def test_a_database_only_command_starts_without_torch(tmp_path: Path) -> None:
    """`localize tasks list` loads no torch, transformers, numpy, adapter store or Alembic once the schema is
    current: it starts in a fraction of the time a command that loads the model needs (under a second on a quiet
    core; `localize bench --only startup` measures it)."""
    env = {**os.environ, "LOCALIZE_HOME": str(tmp_path)}
    command = ("from localize.cli import app\n"
               "try: app(['tasks', 'list'])\n"
               "except SystemExit: pass")
    first = _imported(command, env)  # a new database: Alembic creates the schema
    assert "torch" not in first and "localize.store" not in first
    started = time.perf_counter()
    assert _imported(command, env) == []
    assert time.perf_counter() - started < 10  # a generous bound for a loaded CI machine; the list is the real check
    assert _imported(command.replace("'list'", "'list', '--json'"), env) == []


def test_importing_the_cli_loads_no_service_database_or_model_code() -> None:
    """Every command module imports its services inside the command's body: importing the CLI (what any command,
    `--help` included, pays) loads neither the services, the database layer nor pydantic, SQLAlchemy or torch."""
    probe = ("import sys, json, localize.cli\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('sqlalchemy', 'sqlmodel', 'pydantic', 'alembic', 'torch', 'numpy', 'safetensors') "
             "or m.startswith(('localize.services', 'localize.db', 'localize.runtime', 'localize.store')))))")
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout.splitlines()[-1]) == []


def test_command_annotations_are_resolved_once_at_import() -> None:
    """typer would evaluate every string annotation of every command four times on each run; the CLI resolves them
    once when it registers its commands."""
    from localize.cli import app

    def callbacks(typer_app):  # noqa: ANN001, ANN202
        yield from (command.callback for command in typer_app.registered_commands)
        if typer_app.registered_callback is not None:
            yield typer_app.registered_callback.callback
        for group in typer_app.registered_groups:
            yield from callbacks(group.typer_instance)

    found = list(callbacks(app))
    assert len(found) > 30 and any(function.__annotations__ for function in found)
    unresolved = [f"{function.__module__}.{function.__name__}" for function in found
                  if any(isinstance(value, str) for value in function.__annotations__.values())]
    assert unresolved == []


def test_the_program_pauses_the_collector_while_it_starts(tmp_path: Path) -> None:
    """A run of the program (``app()``, what the `localize` script calls) collects no garbage while it imports,
    then freezes what start-up built and collects again; its database closes at exit (no -wal file is left)."""
    env = {**os.environ, "LOCALIZE_HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "localize.cli", "db", "upgrade"], env=env, check=True, cwd=REPO,
                   capture_output=True)
    probe = ("import gc, json\n"
             "before = gc.get_stats()[0]['collections']\n"
             "from localize.cli import app\n"
             "try: app(['tasks', 'list'])\n"
             "except SystemExit: pass\n"
             "print(json.dumps([gc.get_stats()[0]['collections'] - before, gc.get_freeze_count(), gc.isenabled()]))")
    child = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=REPO)
    assert child.returncode == 0, child.stderr
    collections, frozen, enabled = json.loads(child.stdout.splitlines()[-1])
    assert enabled and frozen > 50_000
    assert collections < 100  # about 170 without the pause, about 50 with it (all after start-up)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["localize.db"]


def test_commands_invoked_by_a_host_leave_its_collector_alone(tmp_path: Path) -> None:
    """Typer's test runner (any host that invokes commands itself) keeps its collector running and unfrozen."""
    import gc

    from typer.testing import CliRunner

    from localize.cli import app

    frozen = gc.get_freeze_count()
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "tasks", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_an_epoch_reports_its_rows_as_it_goes(base, tiny_texts, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long epoch (a task prior's) says how many rows it has done, so the CLI's bar moves and its ETA means
    something; here every clock reading is 2 s later, so each batch reports."""
    import itertools

    import localize.training as training

    clock = itertools.count(0.0, 2.0)
    monkeypatch.setattr(training.time, "perf_counter", lambda: next(clock))
    texts, john, _, label_set = tiny_texts
    seen: list[tuple[float, str]] = []
    args = TrainingArguments(method="head", method_options={"hidden": 0}, max_epochs=2, batch_size=4,
                             validation_fraction=0.0, calibrate=False)
    trainer = training.Trainer(base, args, texts, john, label_set, progress=lambda f, m: seen.append((f, m)))
    trainer.prepare()
    trainer.fit()
    rows = [m for _, m in seen if " rows" in m]
    assert [m.split("; ")[0] for m in rows[:2]] == ["epoch 1/2: 4/24 rows", "epoch 1/2: 8/24 rows"]
    assert any(m.startswith("epoch 2/2: 20/24 rows") for m in rows)
    # Each says how long the rest of the epochs can take at most, and that shrinks as they go.
    assert all(re.fullmatch(r"epoch \d/2: \d+/24 rows; at most (\d+ min )?\d+ s left", m) for m in rows), rows
    found = [re.search(r"at most (?:(\d+) min )?(\d+) s", m) for m in rows]
    left = [int(f.group(1) or 0) * 60 + int(f.group(2)) for f in found]
    assert left == sorted(left, reverse=True) and left[0] == 88, rows
    assert any(m.startswith("epoch 2/2: train_loss") for _, m in seen)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == pytest.approx(4 / 24 / 2)
