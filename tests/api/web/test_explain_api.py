"""Explanations: per-word occlusion attribution for a user's answer, and that it is faithful."""
from __future__ import annotations

import random

from api_support import ADMIN, TASK, TEXTS

from localize.services.explain import remove_spans, word_spans


def _explain(trained, user: str, headers: dict, text: str) -> dict:
    response = trained.client.post(f"/tasks/{TASK}/users/{user}/explain", json={"text": text}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _probability(trained, text: str, label: str) -> float:
    response = trained.client.post(f"/tasks/{TASK}/users/john/predict", json={"texts": [text]}, headers=trained.john)
    return response.json()[0]["probabilities"][label]


def test_explain_gives_the_answer_and_a_weight_per_word(trained):
    text = "Invoice 104 from Umbrella Ltd for office printer paper"
    body = _explain(trained, "john", trained.john, text)
    assert body["answer"]["label"] == "work" and body["answer"]["source"] == "user" and body["prior"] is None
    predicted = trained.client.post(f"/tasks/{TASK}/users/john/predict", json={"texts": [text]},
                                    headers=trained.john).json()[0]
    assert (body["answer"]["abstain"], body["answer"]["threshold"]) == (predicted["abstain"], predicted["threshold"])
    assert [token["token"] for token in body["tokens"]] == text.split()
    assert all(text[token["start"]:token["end"]] == token["token"] for token in body["tokens"])
    # A weight is the fall in the answer's probability without that word, checked against a plain prediction.
    token = body["tokens"][0]
    without = _probability(trained, remove_spans(text, [(token["start"], token["end"])]), "work")
    assert abs(token["weight"] - (body["answer"]["probabilities"]["work"] - without)) < 1e-4
    # Jane files the same text the other way, and her explanation is her own.
    assert _explain(trained, "jane", trained.jane, text)["answer"]["label"] == "personal"


def test_removing_the_top_attributed_words_lowers_the_answer_more_than_removing_random_words(trained):
    rng = random.Random(0)
    top_drops, random_drops = [], []
    for text in TEXTS[:8]:
        body = _explain(trained, "john", trained.john, text)
        label, base = body["answer"]["label"], body["answer"]["probabilities"][body["answer"]["label"]]
        spans = [(t["start"], t["end"]) for t in sorted(body["tokens"], key=lambda t: -t["weight"])]
        k = 2
        top_drops.append(base - _probability(trained, remove_spans(text, spans[:k]), label))
        draws = [base - _probability(trained, remove_spans(text, rng.sample(spans, k)), label) for _ in range(5)]
        random_drops.append(sum(draws) / len(draws))
    mean_top, mean_random = sum(top_drops) / len(top_drops), sum(random_drops) / len(random_drops)
    assert mean_top > mean_random + 0.02, (mean_top, mean_random)


def test_long_texts_are_attributed_in_spans_of_words():
    text = " ".join(f"w{i}" for i in range(130))
    spans = word_spans(text, max_units=64)
    # 130 words in at most 64 units: spans of ceil(130 / 64) = 3 words, the last one shorter.
    assert len(spans) == 44 and spans[0] == (0, len("w0 w1 w2")) and spans[-1] == (text.index("w129"), len(text))
    assert remove_spans("a  b c", [(3, 4)]) == "a c"


def test_bad_explain_requests(trained):
    url = f"/tasks/{TASK}/users/john/explain"
    for body, status, message in (({"text": ""}, 422, "text is empty"), ({"text": "x" * 1001}, 422, "over the limit"),
                                  ({}, 422, "text"), ({"text": 3}, 422, "text")):
        response = trained.client.post(url, json=body, headers=trained.john)
        assert response.status_code == status and message in response.text, (body, response.text)
    assert trained.client.post(url, json={"text": "hi"}, headers=trained.jane).status_code == 404
    assert trained.client.post(f"/tasks/{TASK}/users/ghost/explain", json={"text": "hi"},
                               headers=ADMIN).status_code == 404
