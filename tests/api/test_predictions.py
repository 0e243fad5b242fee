"""Predictions on the shared trained workspace: per user, mixed users in one call, and fan-out."""
from __future__ import annotations

from api_support import ADMIN, JANE_LABELS, JOHN_LABELS, TASK, TEXTS

from localize.services import predictions as prediction_service


def test_each_user_gets_their_own_label_for_the_same_texts(trained):
    for user, headers, labels in (("john", trained.john, JOHN_LABELS), ("jane", trained.jane, JANE_LABELS)):
        response = trained.client.post(f"/tasks/{TASK}/users/{user}/predict", json={"texts": TEXTS},
                                       headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert [p["text"] for p in body] == TEXTS
        assert [p["label"] for p in body] == labels
        assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in body)
        assert {(p["version"], p["source"]) for p in body} == {(1, "user")}


def test_mixed_predict_is_one_batched_service_call(trained, monkeypatch):
    calls = []
    original = prediction_service.predict

    def counting(**kwargs):
        calls.append(len(kwargs["requests"]))
        return original(**kwargs)

    monkeypatch.setattr(prediction_service, "predict", counting)
    request_rows = [{"user": user, "task": TASK, "text": text} for text in TEXTS for user in ("jane", "john")]
    response = trained.client.post("/predict", json={"rows": request_rows}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert calls == [len(request_rows)]
    labels = {"john": JOHN_LABELS, "jane": JANE_LABELS}
    for index, row in enumerate(response.json()):
        assert (row["user"], row["task"], row["text"]) == tuple(request_rows[index].values())
        assert row["label"] == labels[row["user"]][TEXTS.index(row["text"])]


def test_user_key_may_mix_its_own_rows(trained):
    response = trained.client.post("/predict", headers=trained.john, json={"rows": [
        {"user": "john", "task": TASK, "text": TEXTS[0]}, {"user": "john", "task": TASK, "text": TEXTS[1]}]})
    assert response.status_code == 200, response.text
    assert [row["label"] for row in response.json()] == JOHN_LABELS[:2]


def test_fanout_answers_every_user_with_an_adapter(trained):
    response = trained.client.post(f"/tasks/{TASK}/fanout", json={"text": TEXTS[0]}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert {row["user"]: row["label"] for row in response.json()} == {"jane": JANE_LABELS[0], "john": JOHN_LABELS[0]}
    only = trained.client.post(f"/tasks/{TASK}/fanout", json={"text": TEXTS[1], "users": ["jane"]}, headers=ADMIN)
    assert [(row["user"], row["label"]) for row in only.json()] == [("jane", JANE_LABELS[1])]


def test_fanout_to_a_user_without_adapter_is_404_naming_them(trained):
    response = trained.client.post(f"/tasks/{TASK}/fanout", json={"text": "x", "users": ["john", "ghost"]},
                                   headers=ADMIN)
    assert response.status_code == 404
    assert response.json()["type"].endswith("/no-adapter")
    assert "['ghost'] have no active adapter" in response.json()["detail"]


def test_ready_reports_the_base_model_loaded_after_predicting(trained):
    trained.client.post(f"/tasks/{TASK}/users/john/predict", json={"texts": ["x"]}, headers=trained.john)
    assert trained.client.get("/ready").json()["base_model_loaded"] is True


def test_answers_say_whether_they_abstain_and_a_request_may_set_the_target(trained):
    strict = trained.client.post(f"/tasks/{TASK}/users/john/predict", json={"texts": TEXTS, "target_accuracy": 1.0},
                                 headers=trained.john)
    lenient = trained.client.post(f"/tasks/{TASK}/users/john/predict",
                                  json={"texts": TEXTS, "target_accuracy": 0.05}, headers=trained.john)
    assert strict.status_code == lenient.status_code == 200, strict.text
    for row in strict.json() + lenient.json():
        assert isinstance(row["abstain"], bool)
        if row["threshold"] is None:
            assert row["abstain"] is False
        else:
            assert row["abstain"] == (max(row["probabilities"].values()) < row["threshold"])
    for low, high in zip(lenient.json(), strict.json()):
        assert (low["threshold"] or 0) <= (high["threshold"] or 0)
    fanned = trained.client.post(f"/tasks/{TASK}/fanout", json={"text": TEXTS[0], "target_accuracy": 0.9},
                                 headers=ADMIN)
    assert fanned.status_code == 200 and all("abstain" in row for row in fanned.json())
    for bad in (0, 1.5, "high"):
        refused = trained.client.post(f"/tasks/{TASK}/users/john/predict",
                                      json={"texts": TEXTS, "target_accuracy": bad}, headers=trained.john)
        assert refused.status_code == 422 and "target_accuracy" in refused.text
