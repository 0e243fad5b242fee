"""What one user key may take: bounded training arguments (422 naming the field and the allowed range, before
anything is queued), pending jobs and labels per user (set by the operator), and requests per second (429 with
Retry-After). The admin key is not rate limited."""
from __future__ import annotations

from api_support import ADMIN, JOHN_LABELS, TASK, TEXTS, make_settings, rows, running
from test_errors import problem


def test_training_arguments_out_of_range_are_refused_when_queued(ws, john):
    ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
    before = ws.snapshot()
    path = f"/tasks/{TASK}/users/john/jobs"
    for body, field, allowed in [
        ({"method": "lora", "method_options": {"r": 1_000_000}}, "method_options.r", "<= 256"),
        ({"max_epochs": 10**8}, "max_epochs", "<= 1000"),
        ({"patience": 10**8}, "patience", "<= 1000"),
        ({"batch_size": 10**9}, "batch_size", "<= 4096"),
        ({"method": "lora", "method_options": {"layers": [99]}}, "method_options.layers", "each in -6..5"),
    ]:
        response = ws.client.post(path, json=body, headers=john)
        found = problem(response, 422, field, allowed, type_="validation-error")
        assert [error["field"] for error in found["errors"]] == [field]
    assert ws.snapshot() == before  # nothing queued


def test_pending_jobs_and_labels_per_user_are_limited(tmp_path):
    settings = make_settings(tmp_path, max_pending_jobs_per_user=1, max_labels_per_user=len(TEXTS) + 2)
    with running(settings) as ws:
        ws.create_task()
        ws.create_task("other")
        john = ws.create_user("john")
        ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
        report = ws.upload("john", rows(["new 1", "new 2", "new 3", TEXTS[0]], ["work"] * 4), task="other",
                           headers=john)
        assert report["created"] == 2
        assert [error["line"] for error in report["errors"]] == [3, 4]
        assert "max_labels_per_user=26" in report["errors"][0]["message"]
        updated = ws.upload("john", rows(TEXTS[:2], ["personal", "personal"]), headers=john)
        assert updated["errors"] == []  # changing a stored label is never over the quota

        ws.queue("john", headers=john)
        response = ws.client.post("/tasks/other/users/john/jobs", json={"method": "head"}, headers=john)
        problem(response, 409, "max_pending_jobs_per_user=1", type_="conflict")


def test_requests_per_second_per_user_key(tmp_path):
    with running(make_settings(tmp_path, rate_limit_per_second=0.5)) as ws:  # bursts of 1
        ws.create_task()
        john, jane = ws.create_user("john"), ws.create_user("jane")
        assert ws.client.get("/tasks", headers=john).status_code == 200
        response = ws.client.get("/tasks", headers=john)
        problem(response, 429, "user 'john' is over the rate limit of 0.5 requests per second")
        assert response.headers["Retry-After"] == "2"
        assert ws.client.get("/tasks", headers=jane).status_code == 200  # per key
        # The hot prediction route (its own dependency, answered from a cache) counts against the same limit.
        predict = ws.client.post(f"/tasks/{TASK}/users/jane/predict", json={"texts": ["x"]}, headers=jane)
        problem(predict, 429, "user 'jane' is over the rate limit")
        assert all(ws.client.get("/tasks", headers=ADMIN).status_code == 200 for _ in range(5))
