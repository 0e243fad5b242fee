"""The serving engine: mixed-user batches, adapter residency (LRU) and compatibility checks."""
from __future__ import annotations

import pytest
import torch

from localize.adapters import make_method
from localize.adapters.base import init_head
from localize.base_model import BaseDims
from localize.calibration import spread_evenly
from localize.engine import AdapterWeights, Engine, answers
from localize.errors import AdapterError

TEXTS = [
    "Invoice 17 from Globex for printer toner",
    "Dinner at the pizzeria with my parents",
    "Salary",
    "Quarterly VAT payment to the tax office, reference 2024-Q3, paid late with a small penalty",
    "Gym membership renewal",
    "Bought a birthday present for my sister",
]


def _adapter(base, method: str, options: dict, labels: list[str], seed: int, noise: float = 0.05) -> AdapterWeights:
    """An adapter with random, non-trivial parameters (no training needed to test serving)."""
    generator = torch.Generator().manual_seed(seed)
    m = make_method(method, options, base.dims)
    params = {k: v + noise * torch.randn(v.shape, generator=generator) for k, v in m.init_params(base, generator).items()}
    head = init_head(len(labels), base.dims.hidden_size, generator)
    head["weight"] = head["weight"] * 20  # confident enough that the users' predictions differ
    head["bias"] = torch.randn(len(labels), generator=generator) * 0.1
    return AdapterWeights(method=m, params=params, head=head, labels=list(labels), base_model_id=base.dims.model_id,
                          version=seed)


@pytest.fixture(scope="module")
def users(base):
    two = ["personal", "work"]
    three = ["food", "housing", "transport"]
    return {
        "john": _adapter(base, "lora", {"r": 4}, two, seed=1),
        "jane": _adapter(base, "lora", {"r": 4}, two, seed=2),  # same family as john: stacked together
        "zoe": _adapter(base, "lora", {"r": 4}, three, seed=7),  # same family, another task with 3 labels
        "bob": _adapter(base, "ia3", {"layers": [-2, -1]}, three, seed=3),
        "ann": _adapter(base, "head", {}, three, seed=4),
        "eve": _adapter(base, "prompt_tuning", {"num_virtual_tokens": 3}, two, seed=5),
        "max": _adapter(base, "prefix_tuning", {"layers": [-3], "num_virtual_tokens": 2}, three, seed=6),
    }


def _matrix(prediction, labels):
    return torch.tensor([prediction.probabilities[label] for label in labels])


def test_mixed_batch_equals_one_user_at_a_time(base, users):
    engine = Engine(base)
    names = list(users)
    rows = [(users[names[i % len(names)]], TEXTS[(i * 5) % len(TEXTS)]) for i in range(2 * len(names) + 3)]
    assert len({w.method.family() for w, _ in rows}) == 5  # john, jane and zoe share one family
    mixed = engine.predict(rows)
    assert len(mixed) == len(rows)

    for name, weights in users.items():
        mine = [(i, text) for i, (w, text) in enumerate(rows) if w is weights]
        alone = engine.predict([(weights, text) for _, text in mine])
        for (i, text), single in zip(mine, alone):
            assert list(mixed[i].probabilities) == weights.labels, name  # no padded classes leak out
            assert mixed[i].label == single.label, (name, text)
            assert mixed[i].version == weights.version
            torch.testing.assert_close(_matrix(mixed[i], weights.labels), _matrix(single, weights.labels),
                                       atol=1e-5, rtol=0)
            assert sum(single.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_one_text_for_every_user_equals_one_user_at_a_time(base, users):
    """Fan-out: the frozen part is computed once for the shared text, every row still gets its own user's answer."""
    engine = Engine(base)
    text = TEXTS[3]
    rows = [(weights, text) for weights in users.values()] + [(users["john"], TEXTS[0]), (users["ann"], text)]
    together = engine.predict(rows)
    for (weights, row_text), prediction in zip(rows, together):
        alone = engine.predict([(weights, row_text)])[0]
        assert prediction.label == alone.label
        assert torch.allclose(_matrix(prediction, weights.labels), _matrix(alone, weights.labels), atol=1e-6)


def test_users_get_their_own_parameters(base, users):
    """Two users of one family in one batch must not see each other's parameters."""
    engine = Engine(base)
    text = TEXTS[0]
    john, jane = engine.predict([(users["john"], text), (users["jane"], text)])
    assert _matrix(john, users["john"].labels).sub(_matrix(jane, users["jane"].labels)).abs().max() > 1e-3


def test_batch_size_splits_do_not_change_results(base, users):
    rows = [(users[name], text) for name in users for text in TEXTS[1:3]]
    whole = Engine(base, batch_size=128).predict(rows)
    split = Engine(base, batch_size=5).predict(rows)  # batches of 5 cut across users and families
    for a, b, (weights, _) in zip(whole, split, rows):
        torch.testing.assert_close(_matrix(a, weights.labels), _matrix(b, weights.labels), atol=1e-5, rtol=0)


def test_predict_empty(base):
    assert Engine(base).predict([]) == []


def test_capacity_must_be_positive(base):
    with pytest.raises(ValueError, match="capacity=0"):
        Engine(base, capacity=0)


def test_lru_evicts_least_recently_used_and_loads_once(base, users):
    engine = Engine(base, capacity=2)
    calls: dict[str, int] = {}

    def loader(name):
        def load():
            calls[name] = calls.get(name, 0) + 1
            w = users[name]
            return AdapterWeights(method=w.method, params=dict(w.params), head=dict(w.head), labels=w.labels,
                                  base_model_id=w.base_model_id, version=w.version)
        return load

    a = engine.adapter("a", loader("john"))
    assert engine.adapter("a", loader("john")) is a  # idempotent: same object, no second load
    assert calls == {"john": 1}
    engine.adapter("b", loader("jane"))
    assert engine.resident_keys() == ["a", "b"]
    engine.adapter("a", loader("john"))  # touch a: b is now least recently used
    assert engine.resident_keys() == ["b", "a"]
    engine.adapter("c", loader("ann"))
    assert engine.resident_keys() == ["a", "c"]  # b evicted
    assert calls == {"john": 1, "jane": 1, "ann": 1}
    engine.adapter("b", loader("jane"))  # a new residency loads again, and evicts a
    assert calls["jane"] == 2
    assert engine.resident_keys() == ["c", "b"]
    engine.evict("c")
    engine.evict("never-loaded")  # no error
    assert engine.resident_keys() == ["b"]
    engine.adapter("c", loader("ann"))
    assert calls["ann"] == 2
    assert len(engine.resident_keys()) <= engine.capacity


def test_incompatible_adapter_is_refused_with_every_problem(base, users):
    good = users["john"]
    other_dims = BaseDims(model_id="bert-base-uncased", hidden_size=768, num_layers=12, num_heads=12,
                          intermediate_size=3072)
    bad = AdapterWeights(
        method=make_method("head", {}, other_dims),
        params={},
        head={"weight": torch.zeros(2, 768), "bias": torch.zeros(2)},
        labels=["personal", "work"],
        base_model_id="bert-base-uncased",
    )
    with pytest.raises(AdapterError) as info:
        bad.check_compatible(base)
    message = str(info.value)
    assert "'bert-base-uncased'" in message and repr(base.dims.model_id) in message  # wrong base named
    assert "shapes" in message  # method dims differ
    assert "head has shape (2, 768)" in message and "(2, 384)" in message  # wrong head shape named
    assert message.count(";") == 2  # all three problems in one error

    # Only the head is wrong: one problem, and the labels are named.
    wrong_head = AdapterWeights(method=good.method, params=good.params, head={"weight": torch.zeros(3, 384),
                                "bias": torch.zeros(3)}, labels=["personal", "work"], base_model_id=base.dims.model_id)
    with pytest.raises(AdapterError, match=r"head has shape \(3, 384\), expected \(2, 384\)") as info:
        wrong_head.check_compatible(base)
    assert "trained on base" not in str(info.value)
    missing_head = AdapterWeights(method=good.method, params=good.params, head={}, labels=["a"],
                                  base_model_id=base.dims.model_id)
    with pytest.raises(AdapterError, match=r"head has shape None"):
        missing_head.check_compatible(base)
    good.check_compatible(base)  # no error

    engine = Engine(base)
    with pytest.raises(AdapterError):
        engine.adapter("bad", lambda: bad)
    assert engine.resident_keys() == []  # a refused adapter never becomes resident


def test_adapter_weights_sizes(users):
    john = users["john"]
    expected = sum(t.numel() for t in john.params.values()) + 2 * 384 + 2
    assert john.trainable_params == expected
    assert john.nbytes == expected * 4  # float32
    ann = users["ann"]  # head method: its own parameters (if any) plus the 3-label head
    assert ann.trainable_params == sum(t.numel() for t in ann.params.values()) + 3 * 384 + 3


def _copy(weights: AdapterWeights) -> AdapterWeights:
    return AdapterWeights(method=weights.method, params=dict(weights.params), head=dict(weights.head),
                          labels=list(weights.labels), base_model_id=weights.base_model_id, version=weights.version)


def test_resident_adapters_live_in_slot_banks_and_predict_as_alone(base, users):
    """Resident adapters are views into per-family slot tensors; gathering them per row changes no prediction."""
    engine = Engine(base)
    resident = {name: engine.adapter(name, lambda w=w: _copy(w)) for name, w in users.items()}
    for name, weights in resident.items():
        bank, slot = weights.slot
        for param, tensor in weights.params.items():
            assert tensor.data_ptr() == bank.tensors[("params", param)][slot].data_ptr()  # a view, not a copy
            torch.testing.assert_close(tensor, users[name].params[param].to(tensor.device))
    # john and jane share a bank (one family, two labels); zoe has three labels: a bank of its own.
    assert resident["john"].slot[0] is resident["jane"].slot[0]
    assert resident["zoe"].slot[0] is not resident["john"].slot[0]
    names = list(resident)
    rows = [(resident[names[i % len(names)]], TEXTS[(i * 5) % len(TEXTS)]) for i in range(3 * len(names))]
    mixed = engine.predict(rows)
    name_of = {id(weights): name for name, weights in resident.items()}
    for (weights, text), prediction in zip(rows, mixed):
        alone = Engine(base).predict([(users[name_of[id(weights)]], text)])[0]
        assert prediction.label == alone.label
        torch.testing.assert_close(_matrix(prediction, weights.labels), _matrix(alone, weights.labels),
                                   atol=1e-5, rtol=0)


def test_fanout_sweeps_the_bank_and_equals_one_user_at_a_time(base):
    """One text for many resident head users is computed from one pooled vector against bank slices."""
    engine = Engine(base)
    labels = ["negative", "neutral", "positive"]
    many = [engine.adapter(i, lambda i=i: _adapter(base, "head", {"hidden": 16}, labels, seed=100 + i))
            for i in range(80)]
    text = TEXTS[3]
    rows = [(weights, text) for weights in many]
    assert engine._sweeps(many[0].method, [w.slot[1] for w in many], torch.zeros(len(many), dtype=torch.long))
    together = engine.predict(rows)
    assert len({p.label for p in together}) > 1  # the users really differ
    for weights, prediction in zip(many, together):
        alone = Engine(base).predict([(_copy(weights), text)])[0]
        assert prediction.label == alone.label
        torch.testing.assert_close(_matrix(prediction, labels), _matrix(alone, labels), atol=1e-5, rtol=0)
    # A subset of users (a sparse range of slots) is gathered instead, with the same answers.
    subset = many[::9]
    for weights, prediction in zip(subset, engine.predict([(w, text) for w in subset])):
        torch.testing.assert_close(_matrix(prediction, labels), _matrix(engine.predict([(weights, text)])[0], labels),
                                   atol=1e-5, rtol=0)


def test_eviction_frees_the_slot_and_keeps_a_held_adapter_correct(base, users):
    """A slot freed by eviction is reused; an evicted adapter a caller still holds keeps its own tensors."""
    engine = Engine(base, capacity=2)
    john = engine.adapter("john", lambda: _copy(users["john"]))
    jane = engine.adapter("jane", lambda: _copy(users["jane"]))
    john_slot = john.slot[1]
    before = engine.predict([(john, TEXTS[0])])[0]
    engine.evict("john")
    assert john.slot is None
    newcomer = engine.adapter("max", lambda: _copy(users["john"]))  # same bank: takes john's freed slot
    assert newcomer.slot[1] == john_slot
    newcomer.slot[0].tensors[("head", "bias")][john_slot].add_(5.0)  # the slot's content changes ...
    after = engine.predict([(john, TEXTS[0]), (jane, TEXTS[0])])[0]  # ... but the evicted john kept a copy
    torch.testing.assert_close(_matrix(after, john.labels), _matrix(before, john.labels), atol=1e-6, rtol=0)


def test_bank_growth_rebinds_resident_views(base):
    """A bank that grows reallocates; every resident adapter's tensors are re-pointed at the grown tensors."""
    engine = Engine(base, capacity=64)
    labels = ["a", "b"]
    originals = [_adapter(base, "lora", {"r": 2, "layers": [-1]}, labels, seed=200 + i) for i in range(20)]
    resident = [engine.adapter(i, lambda w=w: _copy(w)) for i, w in enumerate(originals)]
    bank = resident[0].slot[0]
    # On the CPU every slot the LRU allows is reserved; on a GPU banks grow geometrically (8, 16, 32 for 20).
    assert bank.tensors[("head", "weight")].shape[0] == (64 if base.device.type == "cpu" else 32)
    bank._grow(100)
    assert bank.tensors[("head", "weight")].shape[0] == 100
    for original, weights in zip(originals, resident):
        bank_slot = bank.tensors[("head", "weight")][weights.slot[1]]
        assert weights.head["weight"].data_ptr() == bank_slot.data_ptr()
        torch.testing.assert_close(weights.head["weight"], original.head["weight"].to(bank_slot.device))
    assert engine.resident_bytes() >= 20 * resident[0].nbytes


def test_a_burst_of_texts_for_many_users_equals_one_user_at_a_time(base):
    """Several texts fanned out to the same users at once read each user's weights once for all the texts."""
    engine = Engine(base)
    labels = ["negative", "positive"]
    many = [engine.adapter(i, lambda i=i: _adapter(base, "head", {"hidden": 8}, labels, seed=300 + i))
            for i in range(70)]
    rows = [(weights, text) for text in TEXTS[:3] for weights in many]
    together = engine.predict(rows)
    for (weights, text), prediction in list(zip(rows, together))[::7]:
        alone = Engine(base).predict([(_copy(weights), text)])[0]
        torch.testing.assert_close(_matrix(prediction, labels), _matrix(alone, labels), atol=1e-5, rtol=0)


def test_a_late_adapter_fanout_runs_in_batches_and_equals_one_user_at_a_time(base):
    """One text for more top-layer LoRA users than a batch holds: the encoder layers run batch_size rows at a time."""
    engine = Engine(base, batch_size=4)
    labels = ["a", "b"]
    users = [engine.adapter(i, lambda i=i: _adapter(base, "lora", {"r": 2, "layers": [-1]}, labels, seed=500 + i))
             for i in range(10)]
    together = engine.predict([(weights, TEXTS[2]) for weights in users])
    for weights, prediction in zip(users, together):
        alone = Engine(base).predict([(_copy(weights), TEXTS[2])])[0]
        torch.testing.assert_close(_matrix(prediction, labels), _matrix(alone, labels), atol=1e-5, rtol=0)


# -- heads that read a shared encoder (the default recipe: a task prior's tuned top layers) --------------------------
ALL_SITES = ["query", "key", "value", "attention_output", "intermediate", "output"]


def _reading(base, encoder: AdapterWeights, seed: int) -> AdapterWeights:
    """A user's linear head that reads ``encoder``."""
    head = _adapter(base, "head", {}, encoder.labels, seed=seed)
    head.encoder = encoder
    return head


def _copied(encoder: AdapterWeights, head: AdapterWeights) -> AdapterWeights:
    """What a head reading ``encoder`` must equal: the encoder's own parameters with the user's head."""
    return AdapterWeights(method=encoder.method, params={k: v.clone() for k, v in encoder.params.items()},
                          head={k: v.clone() for k, v in head.head.items()}, labels=head.labels,
                          base_model_id=head.base_model_id, version=head.version)


@pytest.fixture(scope="module")
def encoders(base):
    two = ["personal", "work"]
    return {"tuned": _adapter(base, "lora", {"layers": [-2, -1], "sites": ALL_SITES}, two, seed=40, noise=0.2),
            "ia3": _adapter(base, "ia3", {"layers": [-1]}, two, seed=41, noise=0.3)}


def test_heads_reading_shared_encoders_equal_the_encoders_parameters_with_their_head(base, users, encoders):
    engine = Engine(base)
    heads = [_reading(base, encoders["tuned"], seed=50 + i) for i in range(3)]
    heads += [_reading(base, encoders["ia3"], seed=60)]
    rows = [(heads[i % 4], TEXTS[i % len(TEXTS)]) for i in range(10)]
    rows += [(w, TEXTS[1]) for w in users.values()]  # mixed with every other family in one batch
    mixed = engine.predict(rows)
    for (weights, text), prediction in zip(rows, mixed):
        reference = _copied(weights.encoder, weights) if weights.encoder is not None else weights
        alone = Engine(base).predict([(reference, text)])[0]
        assert prediction.label == alone.label
        torch.testing.assert_close(_matrix(prediction, weights.labels), _matrix(alone, weights.labels),
                                   atol=1e-5, rtol=0)
    assert len({p.label for p in mixed[:3]} | {p.label for p in engine.predict([(h, TEXTS[0]) for h in heads])}) > 1


def test_a_fanout_to_heads_on_one_encoder_runs_the_encoder_once(base, encoders, monkeypatch):
    engine = Engine(base)
    encoder = engine.adapter("prior", lambda: encoders["tuned"])
    many = [engine.adapter(i, lambda i=i: _reading(base, encoder, seed=200 + i)) for i in range(150)]
    calls = []
    import localize.engine as engine_module

    real = engine_module.encode_pooled
    monkeypatch.setattr(engine_module, "encode_pooled", lambda *a, **k: calls.append(a[2].shape[0]) or real(*a, **k))
    together = engine.predict([(weights, TEXTS[3]) for weights in many])
    assert calls == [1]  # one text, one encoder pass, for 150 users
    assert len({p.label for p in together}) > 1
    for weights, prediction in list(zip(many, together))[::15]:
        alone = Engine(base).predict([(_copied(encoders["tuned"], weights), TEXTS[3])])[0]
        torch.testing.assert_close(_matrix(prediction, weights.labels), _matrix(alone, weights.labels),
                                   atol=1e-5, rtol=0)


def test_only_a_head_can_read_an_encoder(base, users, encoders):
    wrong = _adapter(base, "lora", {"r": 4}, ["personal", "work"], seed=70)
    wrong.encoder = encoders["tuned"]
    with pytest.raises(AdapterError, match="a lora adapter cannot read a shared encoder"):
        wrong.check_compatible(base)


def test_answers_spread_rows_of_each_label_count_and_share_together_as_row_by_row(base):
    """A batch's answers are computed per group of rows with the same labels and uniform share, equal to each row's
    own spread; and an adapter's family is built once per method object."""
    rows = []
    for i, labels in enumerate([["a", "b"], ["a", "b", "c"]] * 3):
        weights = _adapter(base, "head", {}, labels, seed=500 + i)
        weights.meta = {**weights.meta, "metrics": {"uniform_share": [0.0, 0.1, 0.3][i % 3]}}
        rows.append((weights, "text"))
    probabilities = torch.softmax(torch.randn(len(rows), 3), -1)
    for row, ((weights, _), prediction) in enumerate(zip(rows, answers(rows, probabilities))):
        expected = spread_evenly(probabilities[row, : len(weights.labels)], weights.uniform_share).tolist()
        assert list(prediction.probabilities.values()) == expected and list(prediction.probabilities) == weights.labels
        assert prediction.label == weights.labels[max(range(len(expected)), key=expected.__getitem__)]
    method = rows[0][0].method
    assert method.family() is method.family()
    assert method.family() == (method.name, tuple(sorted((k, repr(v)) for k, v in method.config.to_dict().items())))
