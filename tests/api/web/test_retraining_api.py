"""Automatic retraining: a job is queued by itself after the task's retrain_every new answers, once."""
from __future__ import annotations

from api_support import ADMIN, TASK
from loop_support import build_loop, queue

from localize.db.models import Job


def _answer(ws, headers: dict, label: str = "work") -> dict:
    entry = queue(ws, "mia", headers, limit=1)["data"][0]
    response = ws.client.post(f"/tasks/{TASK}/users/mia/queue/answers", json={"text_id": entry["text_id"],
                                                                            "label": label}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_job_is_queued_after_retrain_every_new_labels_and_not_again_while_pending(ws):
    keys = build_loop(ws)
    assert ws.client.get(f"/tasks/{TASK}/retraining", headers=keys["mia"]).json() == {"retrain_every": 20}
    # Mia's six uploaded labels count as new too (she has never trained): 6 + 2 answers = 8.
    response = ws.client.put(f"/tasks/{TASK}/retraining", json={"retrain_every": 8}, headers=ADMIN)
    assert response.status_code == 200 and response.json() == {"retrain_every": 8}
    assert _answer(ws, keys["mia"])["job"] is None
    status = ws.client.get(f"/tasks/{TASK}/users/mia/retraining", headers=keys["mia"]).json()
    assert status == {"retrain_every": 8, "new_labels": 7, "labels_to_go": 1, "pending_job": None}
    job = _answer(ws, keys["mia"], "personal")["job"]
    assert job is not None and job["state"] == "queued" and job["user"] == "mia"
    assert any("automatically after 8 new labels" in event["message"] for event in job["events"])
    # While it is pending, more answers queue nothing (one pending job per user).
    for _ in range(9):
        assert _answer(ws, keys["mia"])["job"] is None
    assert ws.count(Job) == 1
    assert ws.client.get(f"/tasks/{TASK}/users/mia/retraining", headers=keys["mia"]).json()["pending_job"] == job["id"]
    ws.run_jobs()
    # The labels given while it was pending count toward the next one: the next answer queues it.
    assert ws.client.get(f"/jobs/{job['id']}", headers=ADMIN).json()["state"] == "succeeded"
    second = _answer(ws, keys["mia"])
    assert second["guess"]["version"] == 1 and second["job"] is not None and ws.count(Job) == 2


def test_retraining_off_queues_nothing(ws):
    keys = build_loop(ws)
    assert ws.client.put(f"/tasks/{TASK}/retraining", json={"retrain_every": 0}, headers=ADMIN).status_code == 200
    for _ in range(3):
        assert _answer(ws, keys["mia"])["job"] is None
    status = ws.client.get(f"/tasks/{TASK}/users/mia/retraining", headers=keys["mia"]).json()
    assert status["labels_to_go"] is None and ws.count(Job) == 0


def test_bad_settings_are_refused_and_keep_the_old_one(ws):
    keys = build_loop(ws)
    url = f"/tasks/{TASK}/retraining"
    for body, status, message in (({"retrain_every": -1}, 422, "greater than or equal to 0"),
                                  ({"retrain_every": 100_001}, 422, "less than or equal to 100000"),
                                  ({"retrain_every": "5"}, 422, "valid integer"),
                                  ({"retrain_every": 2.5}, 422, "valid integer"),
                                  ({}, 422, "retrain_every"),
                                  ({"retrain_every": 5, "extra": 1}, 422, "extra")):
        response = ws.client.put(url, json=body, headers=ADMIN)
        assert response.status_code == status and message in response.text, (body, response.text)
    assert ws.client.put(url, json={"retrain_every": 5}, headers=keys["mia"]).status_code == 403
    assert ws.client.put(url, content="retrain_every=5", headers={**ADMIN, "Content-Type": "text/plain"}).status_code == 415
    assert ws.client.get(url, headers=ADMIN).json() == {"retrain_every": 20}
    assert ws.client.get(f"/tasks/{TASK}/users/john/retraining", headers=keys["mia"]).status_code == 404
