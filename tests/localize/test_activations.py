"""The cache of frozen activations: each text's input to a layer is computed once; a pooled embedding (or a higher
layer's input) starts from the highest lower layer already cached, and equals the one computed from scratch."""
from __future__ import annotations

import torch

from localize.activations import ActivationCache


def test_a_pooled_embedding_starts_from_a_cached_lower_layer_and_equals_the_one_from_scratch(base, tiny_texts,
                                                                                            monkeypatch):
    texts = tiny_texts[0]
    top = base.dims.num_layers
    scratch = torch.stack(ActivationCache().frozen_inputs(base, texts, top))
    cache = ActivationCache()
    cache.frozen_inputs(base, texts[:10], 2)  # a task prior's first tuned layer, for some of the texts
    runs: list[tuple[int, int]] = []
    real = type(base).run_layers

    def spy(self, hidden, mask, *, start=0, stop=None, hooks=None):  # noqa: ANN001, ANN202
        runs.append((start, hidden.shape[0]))
        return real(self, hidden, mask, start=start, stop=stop, hooks=hooks)

    monkeypatch.setattr(type(base), "run_layers", spy)
    pooled = torch.stack(cache.frozen_inputs(base, texts, top))
    assert torch.allclose(pooled, scratch, atol=1e-5)
    # The ten with a cached layer-2 input ran layers 2-5; the other fourteen ran all six.
    assert sorted(runs) == [(0, len(texts) - 10), (2, 10)]
    runs.clear()
    again = torch.stack(cache.frozen_inputs(base, texts, top))
    assert runs == [] and torch.equal(again, pooled) and cache.hits == len(texts)


def test_a_higher_layers_input_starts_from_a_lower_one(base, tiny_texts):
    texts = tiny_texts[0][:6]
    cache = ActivationCache()
    cache.frozen_inputs(base, texts, 1)
    from_lower = cache.frozen_inputs(base, texts, 4)
    from_scratch = ActivationCache().frozen_inputs(base, texts, 4)
    for a, b in zip(from_lower, from_scratch):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def test_a_scoring_cache_computes_pooled_values_in_bf16_and_keeps_them_from_the_served_cache(base, tiny_texts,
                                                                                            monkeypatch):
    from localize import activations
    from localize.activations import ScoringActivationCache

    texts = tiny_texts[0]
    top = base.dims.num_layers
    monkeypatch.setattr(activations, "cpu_has_native_bf16", lambda: True)
    served = ActivationCache()
    scoring = ScoringActivationCache(served)
    layer_two = scoring.frozen_inputs(base, texts, 2)  # a prior's first tuned layer: float32, and served's
    assert len(served._entries) == len(texts) and len(scoring._entries) == 0
    assert all(torch.equal(a, b) for a, b in zip(layer_two, ActivationCache().frozen_inputs(base, texts, 2)))
    pooled = torch.stack(scoring.frozen_inputs(base, texts, top))
    exact = torch.stack(ActivationCache().frozen_inputs(base, texts, top))
    assert not torch.equal(pooled, exact)  # computed in bfloat16 ...
    assert torch.nn.functional.cosine_similarity(pooled, exact).min() > 0.999  # ... to the same direction
    assert len(scoring._entries) == len(texts) and len(served._entries) == len(texts)  # served got none of them
    assert torch.equal(torch.stack(served.frozen_inputs(base, texts, top)), exact)


def test_without_bf16_matrix_units_a_scoring_cache_computes_in_float32(cpu_base, tiny_texts, monkeypatch):
    base = cpu_base  # a CPU without native bfloat16 (a GPU with bfloat16 computes the scoring cache in it)
    from localize import activations
    from localize.activations import ScoringActivationCache

    texts = tiny_texts[0][:8]
    monkeypatch.setattr(activations, "cpu_has_native_bf16", lambda: False)
    top = base.dims.num_layers
    scored = ScoringActivationCache(ActivationCache()).frozen_inputs(base, texts, top)
    assert all(torch.equal(a, b) for a, b in zip(scored, ActivationCache().frozen_inputs(base, texts, top)))


def test_a_stacks_encodings_are_its_members_side_by_side_each_cached_once(base):
    from localize.adapters import make_method
    from localize.engine import AdapterWeights

    method = make_method("lora_stack", {"r": 2, "layers": [-1], "sites": ["value"], "members": 2}, base.dims)
    params = {k: v + 0.01 if "lora_B" in k else v
              for k, v in method.init_params(base, torch.Generator().manual_seed(0)).items()}
    stack = AdapterWeights(method, params, {}, ["a", "b"], base.dims.model_id)
    texts = ["gold is up today", "oil slides"]
    cache = ActivationCache()
    encoded = cache.encoded(base, stack, texts)
    misses, hits = cache.misses, cache.hits
    members = [cache.encoded(base, member, texts) for member in stack.members()]
    assert all(torch.equal(row, torch.cat(parts)) for row, *parts in zip(encoded, *members))
    assert cache.misses == misses and cache.hits == hits + 2 * len(texts)  # the stack's run cached each member's
