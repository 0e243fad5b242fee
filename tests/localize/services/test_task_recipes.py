"""Whole-task training: a job chooses the task's recipe on its labels, stores the choice on the task and registers
the winner's task prior; users' jobs queued beside it wait for it and train with the winner. A pinned recipe skips
the choice. Runs with two fast candidates in place of the real ones (those train LoRA priors: minutes)."""
from __future__ import annotations

import copy

import pytest

from localize.db.models import JobState
from localize.db.session import session_scope
from localize.errors import ValidationError
from localize.jobrunner import run_jobs_locally
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services import jobs as job_service
from localize.services import task_recipes
from localize.services.labels import upsert_labels
from localize.services.tasks import create_task, get_task
from localize.services.users import get_user

from .support import JANE_LABELS, JOHN_LABELS, LABELS, TEXTS, label_rows

USERS = {"john": JOHN_LABELS, "ann": JOHN_LABELS, "bob": JOHN_LABELS, "jane": JANE_LABELS}


@pytest.fixture
def database_backend() -> str:
    """SQLite only: the API's whole-task test runs on PostgreSQL too, and each run here trains three folds."""
    return "sqlite"


@pytest.fixture(autouse=True)
def candidates(fast_recipe_candidates):
    return fast_recipe_candidates


def _whole_task(runtime: Runtime) -> list[int]:
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="notes", labels=LABELS)
        for name, values in USERS.items():
            upsert_labels(session=session, task=task, rows=label_rows(name, TEXTS, values))
        users = [get_user(session=session, name=name) for name in USERS]
        return [job.id for job in job_service.queue_whole_task(session=session, task=task, users=users)]


def test_whole_task_training_chooses_stores_and_trains_every_user_with_the_winner(runtime: Runtime, candidates) -> None:
    _, loose = candidates
    job_ids = _whole_task(runtime)
    with session_scope(runtime.database) as session:
        jobs = [job_service.get_job(session=session, job_id=i) for i in job_ids]
        assert jobs[0].user_id is None and jobs[0].args == {"recipe": "choose"}
        assert all(job.args == {"recipe": "task"} for job in jobs[1:]) and len(jobs) == 1 + len(USERS)
    finished = run_jobs_locally(runtime=runtime, job_ids=job_ids)
    assert [job.state for job in finished] == [JobState.SUCCEEDED] * len(job_ids), [j.error for j in finished]
    assert finished[0].metrics["recipe_chosen"] == "loose-head"

    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="notes")
        recipe = task.recipe
        assert recipe["recipe"] == "loose-head" and recipe["pinned"] is False
        choice = recipe["choice"]
        assert [c["name"] for c in choice["candidates"]] == ["stubborn-head", "loose-head"]
        scores = {c["name"]: c for c in choice["candidates"]}
        # The winner's prior is trained again on every text, and stops where the choice's priors found their best.
        last = scores["loose-head"]["prior_last_epoch"]
        assert choice["folds"] == 3 and 1 <= last <= loose.args.prior_max_epochs
        assert choice["prior"] == ("trained again on every text (those the choice held out too), to epoch "
                                   f"{last}: the latest best epoch of the choice's own priors")
        assert scores["loose-head"]["score"] > scores["stubborn-head"]["score"]
        # The winner's arguments, with the calibration correction the choice measured on its held-out rows.
        assert scores["loose-head"]["held_out_ece"] is not None
        correction = {k: scores["loose-head"][k] for k in ("temperature_scale", "added_uniform_share")}
        rule = scores["loose-head"]["decision_offsets"] or None  # four users: no rule is beyond chance
        assert recipe["args"] == {**loose.args.to_dict(), **correction, "decision_offsets": rule,
                                  "prior_last_epoch": last}
        prior = adapter_service.active_version(session=session, task=task, user=None)
        assert prior.method == "head" and prior.n_labels == len(USERS) * len(TEXTS)
        assert prior.metrics["epochs"] == last
        for name in USERS:
            [version] = adapter_service.list_versions(session=session, task=task, user=get_user(session=session, name=name))
            assert version.training_args == recipe["args"], name
        # Pinning a recipe the choice measured keeps its correction and its decision rule.
        measured = copy.deepcopy(task.recipe)
        next(c for c in measured["choice"]["candidates"] if c["name"] == "stubborn-head")["decision_offsets"] = {
            LABELS[1]: 0.4}
        task.recipe = measured
        pinned = task_recipes.pin_recipe(session=session, task=task, name="stubborn-head")
        assert pinned.recipe["args"]["decision_offsets"] == {LABELS[1]: 0.4}
        assert pinned.recipe["args"]["temperature_scale"] == scores["stubborn-head"]["temperature_scale"]
        assert pinned.recipe["args"]["added_uniform_share"] == scores["stubborn-head"]["added_uniform_share"]
        assert pinned.recipe["args"]["prior_last_epoch"] == scores["stubborn-head"]["prior_last_epoch"]
        events = [e.message for e in job_service.job_public(session=session, job=finished[0], with_events=True).events]
    assert any(m.startswith("recipe chosen: loose-head (validation accuracy / macro-F1: stubborn-head 0.") for m in events)


def test_a_pinned_recipe_skips_the_choice_and_users_train_with_it(runtime: Runtime, candidates) -> None:
    stubborn, _ = candidates
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="notes", labels=LABELS)
        for name, values in USERS.items():
            upsert_labels(session=session, task=task, rows=label_rows(name, TEXTS, values))
        task_recipes.pin_recipe(session=session, task=task, name="stubborn-head")
        users = [get_user(session=session, name=name) for name in USERS]
        jobs = job_service.queue_whole_task(session=session, task=task, users=users)
        assert jobs[0].user_id is None and jobs[0].args == {"recipe": "task"}  # the pinned recipe's prior, no choice
        job_ids = [job.id for job in jobs]
    finished = run_jobs_locally(runtime=runtime, job_ids=job_ids)
    assert all(job.state == JobState.SUCCEEDED for job in finished), [j.error for j in finished]
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="notes")
        assert task.recipe["recipe"] == "stubborn-head" and "choice" not in task.recipe
        [version] = adapter_service.list_versions(session=session, task=task, user=get_user(session=session, name="jane"))
        assert version.training_args == stubborn.args.to_dict()
        unpinned = task_recipes.pin_recipe(session=session, task=task, name=None)
        assert unpinned.recipe["pinned"] is False and unpinned.recipe["recipe"] == "stubborn-head"
        with pytest.raises(ValidationError, match=r"recipe 'nope' is not one of \['stubborn-head', 'loose-head'\]"):
            task_recipes.pin_recipe(session=session, task=task, name="nope")


def test_the_stacked_priors_label_limit_setting_reaches_the_choice(runtime: Runtime, candidates, monkeypatch) -> None:
    from localize import recipe_candidates

    limits: list[int] = []
    monkeypatch.setattr(recipe_candidates, "candidate_recipes",
                        lambda stacked_priors_max_rows: limits.append(stacked_priors_max_rows) or list(candidates))
    runtime.settings.stacked_priors_max_labels = 50_000
    choice_job, *_ = _whole_task(runtime)
    [finished] = run_jobs_locally(runtime=runtime, job_ids=[choice_job])
    assert finished.state == JobState.SUCCEEDED, finished.error
    assert limits == [50_000]


def test_the_chosen_priors_encodings_are_computed_once_for_every_users_job(runtime: Runtime, monkeypatch) -> None:
    """With a prior that tunes encoder layers, the choice job encodes every text with the prior it registers, in
    large batches; the users' jobs then find every encoding they read in the cache."""
    from localize import recipe_candidates
    from localize.recipe_candidates import Candidate
    from localize.training_args import TrainingArguments

    lora = Candidate("tiny-lora-head", TrainingArguments(method="lora", method_options={"layers": [-1], "r": 2},
                                                        train_scope="head", prior_max_epochs=2), "a one-layer prior")
    monkeypatch.setattr(recipe_candidates, "candidate_recipes", lambda stacked_priors_max_rows=0: [lora])
    job_ids = _whole_task(runtime)
    cache = runtime.activation_cache
    choice_job, *user_jobs = job_ids
    [finished] = run_jobs_locally(runtime=runtime, job_ids=[choice_job])
    assert finished.state == JobState.SUCCEEDED, finished.error
    misses = cache.misses
    finished = run_jobs_locally(runtime=runtime, job_ids=user_jobs)
    assert all(job.state == JobState.SUCCEEDED for job in finished), [j.error for j in finished]
    assert cache.misses == misses  # every user's texts were already encoded with the registered prior
