from __future__ import annotations

import json
from pathlib import Path

import pytest

from localize import demo_data
from localize.demo_data import (
    JANE,
    JOHN,
    LABELS,
    SHOWCASE,
    SHOWCASE_TWEETS,
    DemoUser,
    Tweet,
    demo_rows,
    generate_tweets,
    label_for,
    write_jsonl,
)
from localize.labels_io import infer_label_set, read_label_file


def test_same_seed_same_tweets_other_seed_other_tweets() -> None:
    assert generate_tweets(200, seed=7) == generate_tweets(200, seed=7)
    assert generate_tweets(200, seed=7) != generate_tweets(200, seed=8)
    # A longer run starts with the shorter one, so n only changes how many are drawn.
    assert generate_tweets(300, seed=7)[:200] == generate_tweets(200, seed=7)
    assert demo_rows(50, seed=3) == demo_rows(50, seed=3)


def test_tweets_are_distinct_and_cover_assets_and_directions() -> None:
    tweets = generate_tweets(2000, seed=0)
    assert len({t.text for t in tweets}) == 2000
    kinds = {(t.asset, t.direction) for t in tweets}
    assert {("gold", 1), ("gold", -1), ("gold", 0), ("oil", 1), ("oil", -1), ("oil", 0)} <= kinds
    assert {t.asset for t in tweets} - {"gold", "oil"}, "expected tweets about assets nobody holds"
    assert all(t.direction in (-1, 0, 1) for t in tweets)


def test_vocabulary_is_varied_so_a_model_cannot_key_on_one_word() -> None:
    text = " ".join(t.text.lower() for t in generate_tweets(3000, seed=0))
    for word in ("soars", "plunges", "rallies", "slides", "hits record", "tumbles",
                 "crude", "wti", "brent", "bullion", "xau", "precious metal"):
        assert word in text, word
    gold_up = [t.text for t in generate_tweets(3000, seed=0) if (t.asset, t.direction) == ("gold", 1)]
    assert len({" ".join(text.split()[:2]).lower() for text in gold_up}) > 20


def test_some_moves_are_explained_by_another_assets_move_either_way() -> None:
    # "gold dips as bond yields climb": the reason's verb must not tell the asset's direction, so gold's and oil's
    # moves each way come with reasons in which another asset moves up and in which it moves down.
    others = sorted({name.lower() for asset in demo_data._OTHERS for name in demo_data._NAMES[asset]}, key=len,
                    reverse=True)
    words = {way: {form.split()[0] for verb in verbs for form in (verb[0], verb[2])}
             for way, verbs in ((+1, demo_data._UP_VERBS), (-1, demo_data._DOWN_VERBS))}
    seen = set()
    for tweet in generate_tweets(3000, seed=0):
        if tweet.asset not in ("gold", "oil") or not tweet.direction:
            continue
        for link in (" as ", " while ", " after "):
            clause = tweet.text.lower().split(link, 1)[1] if link in tweet.text.lower() else ""
            name = next((name for name in others if clause.startswith(name + " ")), None)
            if name:
                verb = clause[len(name) + 1:].split()[0]
                seen |= {(tweet.direction, way) for way in (+1, -1) if verb in words[way]}
    assert seen == {(+1, +1), (+1, -1), (-1, +1), (-1, -1)}


def test_some_moves_are_caused_by_something_named_first() -> None:
    # "a strong dollar knocks gold lower": the asset is the object, not the subject.
    texts = [t.text.lower() for t in generate_tweets(3000, seed=0) if t.asset == "gold" and t.direction]
    for phrase in ("sends", "lifts", "drags", "knocks"):
        assert any(phrase in text for text in texts), phrase


@pytest.mark.parametrize(
    ("asset", "direction", "john", "jane"),
    [
        ("gold", 1, "positive", "negative"),
        ("gold", -1, "negative", "positive"),
        ("oil", 1, "negative", "positive"),
        ("oil", -1, "positive", "negative"),
        ("gold", 0, "neutral", "neutral"),
        ("oil", 0, "neutral", "neutral"),
        ("bitcoin", 1, "neutral", "neutral"),
        ("equities", -1, "neutral", "neutral"),
    ],
)
def test_label_for(asset: str, direction: int, john: str, jane: str) -> None:
    tweet = Tweet("t", asset, direction)
    assert (label_for(JOHN, tweet), label_for(JANE, tweet)) == (john, jane)


def test_label_for_any_user_positions() -> None:
    btc_bull = DemoUser("ann", {"bitcoin": +1})
    assert label_for(btc_bull, Tweet("t", "bitcoin", 1)) == "positive"
    assert label_for(btc_bull, Tweet("t", "gold", 1)) == "neutral"


def test_without_noise_john_and_jane_disagree_on_every_directional_gold_and_oil_tweet() -> None:
    tweets = generate_tweets(400, seed=1)
    rows = demo_rows(400, seed=1, noise=0.0)
    by_user = {name: [r for r in rows if r["user"] == name] for name in ("john", "jane")}
    assert [r["text"] for r in by_user["john"]] == [r["text"] for r in by_user["jane"]] == [t.text for t in tweets]
    assert [r["item"] for r in by_user["john"]] == [r["item"] for r in by_user["jane"]]
    for tweet, john, jane in zip(tweets, by_user["john"], by_user["jane"]):
        if tweet.asset in ("gold", "oil") and tweet.direction:
            assert {john["label"], jane["label"]} == {"positive", "negative"}, tweet
        else:
            assert john["label"] == jane["label"] == "neutral", tweet
    assert set(rows[0]) == {"user", "text", "label", "item"}


@pytest.mark.parametrize("noise", [0.05, 0.2])
def test_noise_rate_is_roughly_the_requested_share(noise: float) -> None:
    n = 3000
    tweets = generate_tweets(n, seed=2)
    rows = demo_rows(n, seed=2, noise=noise)
    truth = [label_for(user, t) for user in (JOHN, JANE) for t in tweets]
    flipped = [row["label"] != expected for row, expected in zip(rows, truth)]
    assert abs(sum(flipped) / len(flipped) - noise) < 0.02
    assert all(row["label"] in LABELS for row in rows)


def test_noise_does_not_change_the_tweets() -> None:
    assert [r["text"] for r in demo_rows(100, noise=0.0)] == [r["text"] for r in demo_rows(100, noise=0.5)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_showcase_texts_are_never_generated(seed: int) -> None:
    generated = {t.text.lower() for t in generate_tweets(3000, seed=seed)}
    assert not generated & {text.lower() for text in SHOWCASE}


def test_showcase_covers_the_demo_cases() -> None:
    assert SHOWCASE[0] == "gold is up 150% in after-hours trading"
    assert SHOWCASE == [t.text for t in SHOWCASE_TWEETS]
    kinds = {(t.asset, t.direction) for t in SHOWCASE_TWEETS}
    assert {("gold", 1), ("gold", -1), ("oil", 1), ("oil", -1)} <= kinds
    assert any(label_for(JOHN, t) == label_for(JANE, t) == "neutral" for t in SHOWCASE_TWEETS)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"noise": 1.5}, r"noise must be between 0 and 1, got 1.5"), ({"users": (JOHN, JOHN)}, r"distinct.*'john'")],
)
def test_demo_rows_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        demo_rows(10, **kwargs)


def test_generate_tweets_rejects_negative_n() -> None:
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        generate_tweets(-1)


def test_written_jsonl_parses_cleanly_with_labels_io(tmp_path: Path) -> None:
    rows = demo_rows(150, seed=0)
    path = tmp_path / "out" / "demo.jsonl"
    write_jsonl(rows, path)
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == rows
    result = read_label_file(path, allowed_labels=set(LABELS))
    assert result.errors == []
    assert len(result.rows) == len(rows)
    assert infer_label_set(result.rows) == LABELS
