"""The micro-batcher: concurrent requests of different users share engine passes and get their own answers."""
from __future__ import annotations

import threading

import pytest
import torch

from localize.adapters import make_method
from localize.adapters.base import init_head
from localize.batcher import MicroBatcher
from localize.engine import AdapterWeights, Engine

TEXTS = ["gold is up 150% in after-hours trading", "Crude skyrockets after a pipeline explosion", "Salary",
         "Brent collapses as OPEC floods the market", "Bullion sinks to a five-year low", "Gym membership"]


def _adapter(base, method: str, options: dict, labels: list[str], seed: int) -> AdapterWeights:
    generator = torch.Generator().manual_seed(seed)
    m = make_method(method, options, base.dims)
    params = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in m.init_params(base, generator).items()}
    head = init_head(len(labels), base.dims.hidden_size, generator)
    head["weight"] = head["weight"] * 20
    return AdapterWeights(method=m, params=params, head=head, labels=list(labels), base_model_id=base.dims.model_id)


def _matrix(prediction, labels):
    return torch.tensor([prediction.probabilities[label] for label in labels])


def _concurrently(batcher: MicroBatcher, requests: list[list]) -> list:
    results: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = batcher.predict(requests[index])
        except Exception as error:  # noqa: BLE001 - the test inspects it
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_concurrent_requests_share_passes_and_get_their_own_answers(base):
    engine = Engine(base)
    labels = ["negative", "positive"]
    users = [engine.adapter(i, lambda i=i: _adapter(base, "head", {}, labels, seed=400 + i)) for i in range(8)]
    lora = engine.adapter("lora", lambda: _adapter(base, "lora", {"r": 2, "layers": [-1]}, labels, seed=9))
    requests = [[(users[i], TEXTS[i % len(TEXTS)])] for i in range(8)] + [[(lora, TEXTS[0]), (users[0], TEXTS[1])]]
    batcher = MicroBatcher(engine, window=0.5, max_rows=64)
    try:
        results = _concurrently(batcher, requests)
    finally:
        batcher.close()
    assert batcher.requests == len(requests)
    assert batcher.passes < len(requests)  # merged: fewer engine passes than requests
    for rows, answers in zip(requests, results):
        assert len(answers) == len(rows)
        for (weights, text), answer in zip(rows, answers):
            alone = Engine(base).predict([(weights, text)])[0]
            torch.testing.assert_close(_matrix(answer, labels), _matrix(alone, labels), atol=1e-5, rtol=0)


def test_max_rows_caps_a_merged_pass(base):
    engine = Engine(base)
    labels = ["a", "b"]
    user = engine.adapter("u", lambda: _adapter(base, "head", {"hidden": 0}, labels, seed=1))
    batcher = MicroBatcher(engine, window=0.3, max_rows=2)
    try:
        results = _concurrently(batcher, [[(user, text)] for text in TEXTS[:4]])
    finally:
        batcher.close()
    assert all(len(r) == 1 for r in results)
    assert batcher.passes >= 2  # at most two rows per pass


def test_an_engine_error_reaches_every_waiting_request(base):
    class Broken(Engine):
        def predict(self, rows):
            raise RuntimeError("engine broke")

    batcher = MicroBatcher(Broken(base), window=0.2, max_rows=64)
    user = _adapter(base, "head", {"hidden": 0}, ["a", "b"], seed=1)
    try:
        results = _concurrently(batcher, [[(user, TEXTS[0])], [(user, TEXTS[1])]])
    finally:
        batcher.close()
    assert all(isinstance(r, RuntimeError) and "engine broke" in str(r) for r in results)


@pytest.mark.parametrize("window, max_rows, passes, message",
                         [(-1, 8, 1, "window=-1"), (0.01, 0, 1, "max_rows=0"), (0.01, 8, 0, "passes=0")])
def test_bad_settings_are_refused(base, window, max_rows, passes, message):
    with pytest.raises(ValueError, match=message):
        MicroBatcher(Engine(base), window=window, max_rows=max_rows, passes=passes)


@pytest.mark.parametrize(("cores", "threads", "passes"), [(2, 2, 1), (2, 1, 2), (16, 4, 4), (1, 2, 1)])
def test_passes_in_flight_default_to_what_the_cores_hold_of_the_intra_op_threads(monkeypatch, cores, threads, passes):
    from localize import batcher

    monkeypatch.setattr(batcher.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert batcher.passes_for_cores() == passes
    assert batcher.passes_for_cores(threads=1) == cores  # a serving process's threads, where it sets them


def test_the_server_runs_the_passes_its_setting_names_or_the_default(tmp_path, monkeypatch):
    from localize import batcher
    from localize.runtime import Runtime
    from localize.settings import Settings

    class FakeEngine:  # the batcher only keeps it, and asks where its base runs
        def __init__(self, device: str) -> None:
            self.base = type("Base", (), {"device": torch.device(device)})()

    monkeypatch.setattr(batcher, "passes_for_cores", lambda threads: 3)
    monkeypatch.setattr(Runtime, "engine", FakeEngine("cpu"))
    assert Runtime(Settings(home=tmp_path)).batcher._passes_in_flight == 3
    assert Runtime(Settings(home=tmp_path, batch_passes=5)).batcher._passes_in_flight == 5
    monkeypatch.setattr(Runtime, "engine", FakeEngine("cuda"))  # one device: one pass computes, one collects
    assert Runtime(Settings(home=tmp_path)).batcher._passes_in_flight == 2
