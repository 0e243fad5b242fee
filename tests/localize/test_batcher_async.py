"""The micro-batcher's coroutine door: requests awaiting on an event loop share engine passes with each other and
with threads, get their own answers, and a request whose client went away does not disturb the others."""
from __future__ import annotations

import asyncio

import torch
from test_batcher import TEXTS, _adapter, _concurrently, _matrix

from localize.batcher import MicroBatcher
from localize.engine import Engine

LABELS = ["negative", "positive"]


def test_coroutines_share_passes_and_get_their_own_answers(base):
    engine = Engine(base)
    users = [engine.adapter(i, lambda i=i: _adapter(base, "head", {}, LABELS, seed=500 + i)) for i in range(6)]
    requests = [[(users[i], TEXTS[i])] for i in range(6)]
    batcher = MicroBatcher(engine, window=2.0, max_rows=64)  # wide: a busy machine must not split the six

    async def all_at_once():  # noqa: ANN202
        return await asyncio.gather(*(batcher.predict_async(rows) for rows in requests))

    try:
        results = asyncio.run(all_at_once())
    finally:
        batcher.close()
    # Merged: fewer passes than coroutines (usually one; a pass already dispatched when the others arrive makes two).
    assert batcher.passes <= 2 and batcher.requests == 6
    for rows, answer in zip(requests, results):
        (alone,) = engine.predict(rows)
        assert torch.allclose(_matrix(answer[0], LABELS), _matrix(alone, LABELS), atol=1e-5)


def test_a_cancelled_coroutine_leaves_the_others_their_answers(base):
    engine = Engine(base)
    user = engine.adapter("u", lambda: _adapter(base, "head", {}, LABELS, seed=600))
    batcher = MicroBatcher(engine, window=0.3, max_rows=64)

    async def one_gives_up():  # noqa: ANN202
        leaving = asyncio.create_task(batcher.predict_async([(user, TEXTS[0])]))
        staying = asyncio.create_task(batcher.predict_async([(user, TEXTS[1])]))
        await asyncio.sleep(0.05)
        leaving.cancel()
        return await staying, leaving

    try:
        answer, leaving = asyncio.run(one_gives_up())
        threaded = _concurrently(batcher, [[(user, TEXTS[2])]])  # the batcher still serves threads afterwards
    finally:
        batcher.close()
    assert leaving.cancelled()
    assert answer[0].label == engine.predict([(user, TEXTS[1])])[0].label
    assert threaded[0][0].label == engine.predict([(user, TEXTS[2])])[0].label
