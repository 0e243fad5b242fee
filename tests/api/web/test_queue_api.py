"""The labelling queue and its answers: what is offered, in which order, and the bad requests it refuses."""
from __future__ import annotations

from api_support import ADMIN, TASK, TEXTS
from loop_support import POOL, build_loop, queue

from localize.db.models import Label, PoolText, TaskRetraining, TextSkip
from localize.services.queue import DEFAULT_UNCERTAINTY_WEIGHT


def test_queue_offers_the_pool_less_what_the_user_labelled_or_skipped(ws):
    keys = build_loop(ws)
    fresh = queue(ws, "mia", keys["mia"], limit=500)
    # No adapter and no prior: random order over pool + crowd texts Mia has not labelled.
    assert fresh["strategy"] == "random" and fresh["version"] is None
    assert fresh["candidates"] == len(POOL) + len(TEXTS) - 6 == fresh["count"]
    offered = {entry["text"] for entry in fresh["data"]}
    assert offered == set(POOL) | set(TEXTS[6:])
    assert {entry["source"] for entry in fresh["data"] if entry["text"] in POOL} == {"pool"}
    assert {entry["source"] for entry in fresh["data"] if entry["text"] in TEXTS} == {"crowd"}

    first = fresh["data"][0]
    skipped = ws.client.post(f"/tasks/{TASK}/users/mia/queue/answers", json={"text_id": first["text_id"],
                                                                           "skip": True}, headers=keys["mia"])
    assert skipped.status_code == 200 and skipped.json()["skipped"] is True
    second = fresh["data"][1]
    answered = ws.client.post(f"/tasks/{TASK}/users/mia/queue/answers",
                              json={"text_id": second["text_id"], "label": "work"}, headers=keys["mia"])
    assert answered.status_code == 200, answered.text
    assert answered.json()["label"] == "work" and answered.json()["guess"] is None  # no model yet
    after = queue(ws, "mia", keys["mia"], limit=500)
    assert after["candidates"] == fresh["candidates"] - 2
    assert {first["text_id"], second["text_id"]}.isdisjoint(entry["text_id"] for entry in after["data"])
    assert ws.count(TextSkip) == 1 and ws.count(Label) == 2 * len(TEXTS) + 6 + 1


def test_with_an_adapter_the_queue_is_ordered_by_the_users_model_and_answers_show_its_guess(ws):
    keys = build_loop(ws)
    ws.train("mia")
    body = queue(ws, "mia", keys["mia"], limit=10, random_share=0.2)
    assert body["strategy"] == "active" and body["version"] == 1 and body["count"] == 10
    reasons = [entry["reason"] for entry in body["data"]]
    assert reasons.count("random") == 2 and reasons.count("active") == 8
    active = [entry for entry in body["data"] if entry["reason"] == "active"]
    assert all(0 <= entry["uncertainty"] <= 1 for entry in active)
    assert [entry["score"] for entry in active] == sorted((entry["score"] for entry in active), reverse=True)
    # Without a task prior the disagreement term is 0: the score is the weighted uncertainty alone.
    assert all(abs(entry["score"] - DEFAULT_UNCERTAINTY_WEIGHT * entry["uncertainty"]) < 1e-9 for entry in active)
    # The queue's top is the least certain of all candidates.
    everything = queue(ws, "mia", keys["mia"], limit=500, random_share=0)
    assert body["data"][0]["score"] == max(entry["score"] for entry in everything["data"])

    # An answer returns the model's guess, made before the answer was stored.
    entry = everything["data"][0]
    guess = ws.client.post(f"/tasks/{TASK}/users/mia/predict", json={"texts": [entry["text"]]},
                           headers=keys["mia"]).json()[0]
    other = "personal" if guess["label"] == "work" else "work"
    answered = ws.client.post(f"/tasks/{TASK}/users/mia/queue/answers", json={"text_id": entry["text_id"],
                                                                            "label": other}, headers=keys["mia"])
    assert answered.status_code == 200, answered.text
    assert answered.json()["guess"]["label"] == guess["label"] != answered.json()["label"]
    assert answered.json()["guess"]["version"] == 1


def test_bad_queue_requests_and_answers_are_refused_and_change_nothing(ws):
    keys = build_loop(ws)
    text_id = queue(ws, "mia", keys["mia"], limit=1)["data"][0]["text_id"]
    before = ws.snapshot(), ws.count(TextSkip)
    url = f"/tasks/{TASK}/users/mia/queue"
    for params, message in (({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"random_share": 1.5}, "random_share"),
                            ({"uncertainty_weight": -1}, "uncertainty_weight"), ({"limit": "ten"}, "limit")):
        response = ws.client.get(url, params=params, headers=keys["mia"])
        assert response.status_code == 422 and message in response.text, (params, response.text)
    answers = [
        ({"text_id": text_id, "label": "holiday"}, 422, "'holiday' is not one of task 'notes'"),
        ({"text_id": 999999, "label": "work"}, 422, "text 999999 is not in task 'notes'"),
        ({"text_id": text_id}, 422, "either a label or skip=true"),
        ({"text_id": text_id, "label": "work", "skip": True}, 422, "either a label or skip=true"),
        ({"text_id": "seven", "label": "work"}, 422, "text_id"),
        ({"text_id": text_id, "label": "work", "colour": "red"}, 422, "colour"),
    ]
    for body, status, message in answers:
        response = ws.client.post(f"{url}/answers", json=body, headers=keys["mia"])
        assert response.status_code == status and message in response.text, (body, response.text)
    assert (ws.snapshot(), ws.count(TextSkip)) == before


def test_another_users_queue_does_not_exist_for_a_user_key(ws):
    keys = build_loop(ws)
    assert ws.client.get(f"/tasks/{TASK}/users/john/queue", headers=keys["mia"]).status_code == 404
    answer = ws.client.post(f"/tasks/{TASK}/users/john/queue/answers", json={"text_id": 1, "label": "work"},
                            headers=keys["mia"])
    assert answer.status_code == 404
    assert ws.client.get(f"/tasks/{TASK}/users/john/queue", headers=ADMIN).status_code == 200


def test_deleting_a_user_or_the_task_takes_their_skips_pool_and_setting_along(ws):
    keys = build_loop(ws)
    for user in ("mia", "jane"):
        text_id = queue(ws, user, keys[user], limit=1)["data"][0]["text_id"]
        response = ws.client.post(f"/tasks/{TASK}/users/{user}/queue/answers", json={"text_id": text_id, "skip": True},
                                  headers=keys[user])
        assert response.status_code == 200, response.text
    assert ws.client.put(f"/tasks/{TASK}/retraining", json={"retrain_every": 5}, headers=ADMIN).status_code == 200
    assert ws.client.delete("/users/mia", headers=ADMIN).status_code == 200
    assert ws.count(TextSkip) == 1  # Jane's
    assert ws.client.delete(f"/tasks/{TASK}", headers=ADMIN).status_code == 200
    assert (ws.count(TextSkip), ws.count(PoolText), ws.count(TaskRetraining)) == (0, 0, 0)
