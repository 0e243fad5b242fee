"""Training jobs: the whole loop over HTTP, argument validation, cancellation and who sees which job."""
from __future__ import annotations

from api_support import ADMIN, JANE_LABELS, JOHN_LABELS, TASK, TEXTS, TRAINING, rows
from sqlmodel import Session, select

from localize.db.models import AdapterVersion, Job
from localize.db.session import make_engine
from localize.training_args import TrainingArguments


def test_whole_loop_two_users_learn_opposite_labels(ws, john, jane):
    ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
    ws.upload("jane", rows(TEXTS, JANE_LABELS), headers=jane)
    queued = ws.client.post(f"/tasks/{TASK}/users/john/jobs", json=TRAINING, headers=john)
    assert queued.status_code == 202, queued.text
    assert queued.headers["location"] == f"/jobs/{queued.json()['id']}"
    assert queued.json()["state"] == "queued"
    jane_job = ws.queue("jane", headers=jane)
    # Nothing trains inside the request: the job waits for a worker.
    assert ws.client.get(f"/jobs/{queued.json()['id']}", headers=john).json()["state"] == "queued"

    assert sorted(ws.run_jobs()) == sorted([queued.json()["id"], jane_job["id"]])
    job = ws.client.get(f"/jobs/{queued.json()['id']}", headers=john).json()
    assert job["state"] == "succeeded" and job["progress"] == 1.0
    assert job["adapter_version"] == 1 and job["activated"] is True
    assert job["metrics"]["train_accuracy"] == 1.0 and job["metrics"]["epochs"] <= TRAINING["max_epochs"]
    assert job["args"]["method"] == "head" and job["args"]["max_epochs"] == 5
    messages = [event["message"] for event in job["events"]]
    assert messages[0].startswith("queued") and messages[-1].startswith("succeeded: version 1")

    for user, headers, labels in (("john", john, JOHN_LABELS), ("jane", jane, JANE_LABELS)):
        response = ws.client.post(f"/tasks/{TASK}/users/{user}/predict", json={"texts": TEXTS}, headers=headers)
        assert response.status_code == 200, response.text
        assert [p["label"] for p in response.json()] == labels
        assert {p["version"] for p in response.json()} == {1}
        assert {p["source"] for p in response.json()} == {"user"}

    mixed = ws.client.post("/predict", headers=ADMIN, json={"rows": [
        {"user": user, "task": TASK, "text": text} for text in TEXTS[:4] for user in ("john", "jane")]})
    assert mixed.status_code == 200, mixed.text
    per_user = {user: ws.client.post(f"/tasks/{TASK}/users/{user}/predict", json={"texts": TEXTS[:4]},
                                     headers=ADMIN).json() for user in ("john", "jane")}
    expected = [{"user": user, "task": TASK, **per_user[user][i]} for i in range(4) for user in ("john", "jane")]
    assert [{**row, "probabilities": None} for row in mixed.json()] == \
           [{**row, "probabilities": None} for row in expected]
    for got, want in zip(mixed.json(), expected):
        for label, probability in want["probabilities"].items():
            assert abs(got["probabilities"][label] - probability) < 1e-4


def test_job_without_labels_fails_with_a_clear_error(ws, john):
    job = ws.queue("john", headers=john)
    ws.run_jobs()
    done = ws.client.get(f"/jobs/{job['id']}", headers=john).json()
    assert done["state"] == "failed"
    assert "user 'john' has no labels in task 'notes'" in done["error"]


def test_bad_training_argument_is_422_naming_it(ws, john):
    cases = {
        "bogus": ({"bogus": 1}, "unknown training argument(s) ['bogus']"),
        "range": ({"max_epochs": 0}, "max_epochs=0 must be >= 1"),
        "type": ({"max_epochs": "many"}, "max_epochs"),
        "method": ({"method": "nope"}, "method 'nope' is not one of"),
        "stacked priors under a per-user encoder": ({"prior_members": 3, "train_scope": "all"},
                                                    "prior_members=3 fits users' heads on task priors side by side: "
                                                    "it needs train_scope='head', not 'all'"),
    }
    for name, (args, message) in cases.items():
        response = ws.client.post(f"/tasks/{TASK}/users/john/jobs", json=args, headers=john)
        assert response.status_code == 422, name
        assert message in response.json()["detail"], (name, response.json())
    assert ws.count(Job) == 0


def test_an_empty_body_trains_with_the_tasks_recipe_as_it_stands_when_the_job_runs(ws, john, settings):
    ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
    response = ws.client.post(f"/tasks/{TASK}/users/john/jobs", headers=john)
    assert response.status_code == 202, response.text
    # No arguments: the task's recipe, read when a worker runs the job (the settings' default without one).
    assert response.json()["args"] == {"recipe": "task", "method": settings.default_method}
    assert response.json()["recipe"] == "the task's recipe"
    pinned = ws.client.put(f"/tasks/{TASK}/recipe", json={"recipe": "pooled-head"}, headers=ADMIN)
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["recipe"]["recipe"] == "pooled-head" and pinned.json()["recipe"]["pinned"] is True
    ws.run_jobs()
    with Session(make_engine(settings.resolved_database_url)) as session:
        version = session.exec(select(AdapterVersion)).one()
    assert version.method == "head"  # the pinned recipe, pinned after the job was queued
    assert version.training_args == TrainingArguments.from_dict(pinned.json()["recipe"]["args"]).to_dict()


def test_pinning_an_unknown_recipe_is_422_naming_the_candidates(ws, john):
    response = ws.client.put(f"/tasks/{TASK}/recipe", json={"recipe": "best"}, headers=ADMIN)
    assert response.status_code == 422
    assert ("recipe 'best' is not one of ['prior-head', 'pooled-head', 'prior-mlp', 'prior-mlp-averaged', "
            "'prior3-head', 'prior3-mlp-averaged', 'prior-lora']") in response.json()["detail"]
    assert ws.client.put(f"/tasks/{TASK}/recipe", json={"recipe": "pooled-head"}, headers=john).status_code == 403


def test_cancel_queued_job_then_cancel_again_is_409(ws, john):
    job = ws.queue("john", headers=john)
    response = ws.client.post(f"/jobs/{job['id']}/cancel", headers=john)
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert response.json()["events"][-1]["message"] == "cancelled before it started"
    assert ws.run_jobs() == []  # a cancelled job is never claimed
    again = ws.client.post(f"/jobs/{job['id']}/cancel", headers=john)
    assert again.status_code == 409
    assert f"job {job['id']} already finished (cancelled)" in again.json()["detail"]


def test_list_jobs_is_scoped_to_the_caller(ws, john, jane):
    mine = ws.queue("john", headers=john)
    theirs = ws.queue("jane", headers=jane)
    ws.client.post(f"/jobs/{theirs['id']}/cancel", headers=jane)
    assert [job["id"] for job in ws.client.get("/jobs", headers=john).json()["data"]] == [mine["id"]]
    everything = ws.client.get("/jobs", headers=ADMIN).json()
    assert everything["count"] == 2
    assert [job["id"] for job in everything["data"]] == [theirs["id"], mine["id"]]  # newest first
    cancelled = ws.client.get("/jobs", params={"state": "cancelled"}, headers=ADMIN).json()
    assert [job["id"] for job in cancelled["data"]] == [theirs["id"]]
    by_task = ws.client.get("/jobs", params={"task": TASK, "limit": 1}, headers=ADMIN).json()
    assert by_task["count"] == 2 and len(by_task["data"]) == 1
    bad_state = ws.client.get("/jobs", params={"state": "done"}, headers=ADMIN)
    assert bad_state.status_code == 422 and bad_state.json()["errors"][0]["field"] == "query.state"


def test_stale_and_prior_jobs(ws, john, jane):  # noqa: ARG001
    ws.upload("john", rows(TEXTS[:8], JOHN_LABELS[:8]))
    stale = ws.client.post(f"/tasks/{TASK}/jobs/stale", json=TRAINING, headers=ADMIN)
    assert stale.status_code == 202, stale.text
    assert [job["user"] for job in stale.json()["data"]] == ["john"]  # jane has no labels
    again = ws.client.post(f"/tasks/{TASK}/jobs/stale", json=TRAINING, headers=ADMIN)
    assert again.json()["count"] == 0  # john's job is still pending
    prior = ws.client.post(f"/tasks/{TASK}/prior/jobs", json=TRAINING, headers=ADMIN)
    assert prior.status_code == 202
    assert prior.json()["user"] is None and prior.json()["task"] == TASK
    # A prior job belongs to no user: no user key sees it.
    assert ws.client.get(f"/jobs/{prior.json()['id']}", headers=john).status_code == 404


def test_cancel_a_finished_job_is_409_and_changes_nothing(trained):
    job_id = trained.jobs["john"]["id"]
    before = trained.snapshot()
    response = trained.client.post(f"/jobs/{job_id}/cancel", headers=trained.john)
    assert response.status_code == 409
    assert response.json()["detail"] == f"job {job_id} already finished (succeeded); it cannot be cancelled"
    assert trained.snapshot() == before
    assert trained.client.get(f"/jobs/{job_id}", headers=trained.john).json()["state"] == "succeeded"


def test_whole_task_training_chooses_the_recipe_then_trains_every_user(ws, john, jane, fast_recipe_candidates):
    ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
    ws.upload("jane", rows(TEXTS, JANE_LABELS), headers=jane)
    assert ws.client.post(f"/tasks/{TASK}/jobs/all", headers=john).status_code == 403
    response = ws.client.post(f"/tasks/{TASK}/jobs/all", headers=ADMIN)
    assert response.status_code == 202, response.text
    jobs = response.json()["data"]
    assert (jobs[0]["user"], jobs[0]["recipe"]) == (None, "the recipe chosen on the task's labels")
    assert sorted(job["user"] for job in jobs[1:]) == ["jane", "john"]
    ws.run_jobs()
    recipe = ws.client.get(f"/tasks/{TASK}", headers=john).json()["recipe"]
    assert recipe["recipe"] in ("loose-head", "stubborn-head") and recipe["pinned"] is False
    assert [c["name"] for c in recipe["choice"]["candidates"]] == ["stubborn-head", "loose-head"]
    for user, key in (("john", john), ("jane", jane)):
        [job] = ws.client.get("/jobs", params={"task": TASK}, headers=key).json()["data"]
        assert job["state"] == "succeeded", job
